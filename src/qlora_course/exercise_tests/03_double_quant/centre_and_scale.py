OK_FORMAT = True

test = {   'name': 'centre_and_scale',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _a = torch.tensor([1.0, 3.0, 2.5, 1.5])\n'
                                               '>>> _out = centre_and_scale(_a, 2)\n'
                                               ">>> assert isinstance(_out, (tuple, list)) and len(_out) == 3, 'return three things: (scaled, absmax2, offset)'\n"
                                               '>>> _s, _a2, _off = _out\n'
                                               ">>> _s = _checks.expect_tensor(_s, 'scaled', shape=(4,))\n"
                                               ">>> _a2 = _checks.expect_tensor(_a2, 'absmax2 (one per block)', shape=(2,))\n"
                                               ">>> assert _checks.expect_number(_off, 'offset') == 2.0, 'offset is the mean of all constants'\n"
                                               ">>> assert _a2.tolist() == [1.0, 0.5], 'absmax2 is the largest |a - offset| of each block'\n"
                                               ">>> assert _s.tolist() == [-1.0, 1.0, 1.0, -1.0], 'scaled = (a - offset) / absmax2 of its block'\n"
                                               '>>> _s, _a2, _off = centre_and_scale(torch.tensor([1.0, 1.5, 3.0, 2.5]), 2)\n'
                                               ">>> assert _a2.tolist() == [1.0, 1.0], f'absmax2 is the largest |a - offset| of each block (a block below the mean too), got {_a2.tolist()}'\n"
                                               ">>> _ = _check_own_work('03_double_quant', 'centre_and_scale', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
