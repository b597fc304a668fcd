OK_FORMAT = True

test = {   'name': 'constant_bits',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _b = _checks.expect_number(constant_bits(64), 'constant_bits(64)')\n"
                                               ">>> assert abs(_b - 0.5) < 1e-09, f'one float32 per 64 weights is 32 / 64 bits per weight, got {_b}'\n"
                                               ">>> _b = _checks.expect_number(constant_bits(64, 256), 'constant_bits(64, 256)')\n"
                                               ">>> assert abs(_b - 0.126953125) < 1e-09, f'8 bits per block plus a float32 per 256 blocks: 0.126953125, got {_b}'\n"
                                               ">>> _ = _check_own_work('03_double_quant', 'constant_bits', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
