OK_FORMAT = True

test = {   'name': 'pack_pairs',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _p = _checks.expect_tensor(pack_pairs(torch.tensor([1, 2, 15, 0])), 'pack_pairs([1, 2, 15, 0])', dtype=torch.uint8)\n"
                                               ">>> _ = _checks.expect_tensor(_p, 'pack_pairs of 4 indices (a 1-D tensor of half the length)', shape=(2,))\n"
                                               ">>> assert _p.tolist() == [18, 240], f'expected [18, 240] (0x12, 0xF0), got {_p.tolist()}: first index in the HIGH nibble'\n"
                                               ">>> _ = _check_own_work('02_nf4', 'pack_pairs', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
