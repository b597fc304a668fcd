OK_FORMAT = True

test = {   'name': 'q3',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': ">>> assert adamw8bit_bytes(30000) == 2 * 30000 + 2 * 4 * 118, '118 blocks of 256 (the last one partial)'\n"
                                               ">>> assert adamw8bit_bytes(100) == 800, 'small tensors keep two float32 moments'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
