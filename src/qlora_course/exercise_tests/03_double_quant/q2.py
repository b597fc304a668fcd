OK_FORMAT = True

test = {   'name': 'q2',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> _a = torch.tensor([1.0, 3.0, 2.5, 1.5])\n'
                                               '>>> _s, _a2, _off = centre_and_scale(_a, 2)\n'
                                               ">>> assert float(_off) == 2.0, 'offset is the mean of all constants'\n"
                                               ">>> assert _a2.tolist() == [1.0, 0.5], 'absmax2 is the largest |a - offset| of each block'\n"
                                               ">>> assert _s.tolist() == [-1.0, 1.0, 1.0, -1.0], 'scaled = (a - offset) / absmax2 of its block'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
