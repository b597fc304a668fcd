OK_FORMAT = True

test = {   'name': 'dynamic_map_signed',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _m = _checks.expect_tensor(dynamic_map_signed(), 'dynamic_map_signed()', shape=(256,), dtype=torch.float32)\n"
                                               ">>> assert (_m[1:] > _m[:-1]).all(), '256 distinct values, sorted in increasing order'\n"
                                               ">>> assert _m[-1] == 1 and (_m == 0).sum() == 1, 'the map holds exactly 1 and one exact 0'\n"
                                               ">>> assert (_m < 0).sum() == 127 and (_m > 0).sum() == 128, '127 negative values, 0, 128 positive ones (1 among them)'\n"
                                               '>>> _top = _m[(_m > 0.1) & (_m < 1)]\n'
                                               ">>> assert len(_top) == 64 and abs(_top[0].item() - 0.10703125) < 1e-06, f'the decade 0.1..1 holds the 64 midpoints of 65 points from 0.1 to 1 "
                                               "(smallest 0.10703), got {len(_top)} values'\n"
                                               ">>> assert abs(_m[_m > 0].min().item() - 5.5e-07) < 1e-12, 'the smallest positive value is 0.55 * 10**-6'\n"
                                               ">>> _ = _check_own_work('03_double_quant', 'dynamic_map_signed', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
