OK_FORMAT = True

test = {   'name': 'bnb_adamw_state_bytes',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _b = _checks.expect_int(bnb_adamw_state_bytes([100, 30000], False), 'bnb_adamw_state_bytes([100, 30000], False)')\n"
                                               ">>> assert _b == 8 * 30100, f'32-bit: two float32 moments per element, 240,800 bytes, got {_b:,}'\n"
                                               ">>> _b = _checks.expect_int(bnb_adamw_state_bytes([100, 30000], True), 'bnb_adamw_state_bytes([100, 30000], True)')\n"
                                               ">>> assert _b == 800 + 60944 + 2048, f'8-bit: 800 (small tensor, 32-bit) + 60,944 + the two shared 256-value float32 tables (2,048) = 63,792, got "
                                               "{_b:,}'\n"
                                               ">>> _b = _checks.expect_int(bnb_adamw_state_bytes([100, 200], True), 'bnb_adamw_state_bytes([100, 200], True)')\n"
                                               ">>> assert _b == 2400, f'no tensor is in 8 bits, so no code tables: 2,400 bytes, got {_b:,}'\n"
                                               ">>> _b = _checks.expect_int(bnb_adamw_state_bytes([5000, 5000], True), 'bnb_adamw_state_bytes([5000, 5000], True)')\n"
                                               ">>> assert _b == 22368, f'two 8-bit tensors share ONE pair of code tables: 2 x 10,160 + 2,048 = 22,368, got {_b:,}'\n"
                                               ">>> _ = _check_own_work('04_memory', 'bnb_adamw_state_bytes', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
