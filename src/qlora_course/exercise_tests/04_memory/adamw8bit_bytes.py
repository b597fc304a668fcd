OK_FORMAT = True

test = {   'name': 'adamw8bit_bytes',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _b = _checks.expect_int(adamw8bit_bytes(30000), 'adamw8bit_bytes(30_000)')\n"
                                               ">>> assert _b == 2 * 30000 + 2 * 4 * 118, f'118 blocks of 256 (the last one partial): 60,944 bytes, got {_b:,}'\n"
                                               ">>> _b = _checks.expect_int(adamw8bit_bytes(100), 'adamw8bit_bytes(100)')\n"
                                               ">>> assert _b == 800, f'small tensors keep two float32 moments: 800 bytes, got {_b:,}'\n"
                                               ">>> _ = _check_own_work('04_memory', 'adamw8bit_bytes', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
