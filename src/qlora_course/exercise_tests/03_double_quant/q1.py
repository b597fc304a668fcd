OK_FORMAT = True

test = {   'name': 'q1',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': ">>> assert constant_bits(64) == 0.5, 'one float32 per 64 weights is 32 / 64 bits per weight'\n"
                                               ">>> assert abs(constant_bits(64, 256) - 0.126953125) < 1e-12, '8 bits per block plus a float32 per 256 blocks'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
