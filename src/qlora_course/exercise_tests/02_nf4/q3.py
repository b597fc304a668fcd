OK_FORMAT = True

test = {   'name': 'q3',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> _x = torch.tensor([0.5, -1.0, 0.0, 0.25, 2.0, 2.0, -2.0, 1.0])\n'
                                               '>>> _idx, _absmax = quantize_blocks(_x, nf4.nf4_code(), 4)\n'
                                               ">>> assert _idx.shape == (8,) and _absmax.shape == (2,), 'one index per element, one absmax per block'\n"
                                               ">>> assert torch.equal(_absmax, torch.tensor([1.0, 2.0])), 'absmax is the largest |x| of each block'\n"
                                               '>>> assert _idx[1] == 0 and _idx[4] == 15 and (_idx[6] == 0), "the block\'s absmax maps to the end of the code (-1 or 1)"\n'
                                               ">>> assert _idx[2] == 7, '0 maps to the exact zero of NF4 (index 7)'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
