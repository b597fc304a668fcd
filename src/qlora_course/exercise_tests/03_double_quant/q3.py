OK_FORMAT = True

test = {   'name': 'q3',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course import checks as _checks\n'
                                               '>>> _a = torch.tensor([1.0, 3.0, 2.5, 1.5])\n'
                                               '>>> _out = centre_and_scale(_a, 2)\n'
                                               ">>> assert isinstance(_out, (tuple, list)) and len(_out) == 3, 'return three things: (scaled, absmax2, offset)'\n"
                                               '>>> _s, _a2, _off = _out\n'
                                               ">>> _s = _checks.expect_tensor(_s, 'scaled', shape=(4,))\n"
                                               ">>> _a2 = _checks.expect_tensor(_a2, 'absmax2 (one per block)', shape=(2,))\n"
                                               ">>> assert _checks.expect_number(_off, 'offset') == 2.0, 'offset is the mean of all constants'\n"
                                               ">>> assert _a2.tolist() == [1.0, 0.5], 'absmax2 is the largest |a - offset| of each block'\n"
                                               ">>> assert _s.tolist() == [-1.0, 1.0, 1.0, -1.0], 'scaled = (a - offset) / absmax2 of its block'\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
