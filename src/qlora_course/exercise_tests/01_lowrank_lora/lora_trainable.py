OK_FORMAT = True

test = {   'name': 'lora_trainable',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _n = _checks.expect_int(lora_trainable(4096, 4096, 8), 'lora_trainable(4096, 4096, 8)')\n"
                                               ">>> assert _n == 65536, f'a 4096 x 4096 layer at r = 8 trains 65,536 parameters, got {_n}'\n"
                                               ">>> _n = _checks.expect_int(lora_trainable(4096, 11008, 8), 'lora_trainable(4096, 11008, 8)')\n"
                                               ">>> assert _n == 120832, f'a 4096 -> 11008 layer at r = 8 trains 120,832 parameters, got {_n:,}: A is r x d_in and B is d_out x r'\n"
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'lora_trainable', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
