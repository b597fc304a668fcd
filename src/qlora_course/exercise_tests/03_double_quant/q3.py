OK_FORMAT = True

test = {   'name': 'q3',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> _i = nearest_index(torch.tensor([-1.0, 0.0, 1.0, 0.5]), dmap)\n'
                                               ">>> assert _i.dtype == torch.int64 and _i.shape == (4,), 'one int64 index per value'\n"
                                               ">>> assert dmap[_i[2]] == 1 and dmap[_i[1]] == 0, '0 and 1 are in the map exactly: they must map to themselves'\n"
                                               ">>> assert _i[0] == 0, '-1 is below every value of the map: its nearest is the smallest, index 0'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
