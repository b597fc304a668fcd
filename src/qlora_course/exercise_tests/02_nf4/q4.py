OK_FORMAT = True

test = {   'name': 'q4',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> _p = pack_pairs(torch.tensor([1, 2, 15, 0]))\n'
                                               ">>> assert _p.dtype == torch.uint8, 'the result must be uint8'\n"
                                               ">>> assert _p.tolist() == [18, 240], f'expected [18, 240] (0x12, 0xF0), got {_p.tolist()}: first index in the HIGH nibble'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
