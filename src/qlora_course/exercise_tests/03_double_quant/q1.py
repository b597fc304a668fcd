OK_FORMAT = True

test = {   'name': 'q1',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course import checks as _checks\n'
                                               ">>> _b = _checks.expect_number(constant_bits(64), 'constant_bits(64)')\n"
                                               ">>> assert abs(_b - 0.5) < 1e-09, f'one float32 per 64 weights is 32 / 64 bits per weight, got {_b}'\n"
                                               ">>> _b = _checks.expect_number(constant_bits(64, 256), 'constant_bits(64, 256)')\n"
                                               ">>> assert abs(_b - 0.126953125) < 1e-09, f'8 bits per block plus a float32 per 256 blocks: 0.126953125, got {_b}'\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
