OK_FORMAT = True

test = {   'name': 'checkpointed_layer_inputs',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _b = _checks.expect_int(checkpointed_layer_inputs(course_cfg, 1, 1, 4), 'checkpointed_layer_inputs(course_cfg, 1, 1, 4)')\n"
                                               ">>> assert _b == 8 * 256 * 4, f'8 layers x 256 values x 4 bytes = 8,192, got {_b:,}'\n"
                                               ">>> _b = _checks.expect_int(checkpointed_layer_inputs(course_cfg, 2, 3, 2), 'checkpointed_layer_inputs(course_cfg, 2, 3, 2)')\n"
                                               ">>> assert _b == 8 * 2 * 3 * 256 * 2, f'every token of the batch counts: 8 layers x 2 x 3 tokens x 256 values x 2 bytes, got {_b:,}'\n"
                                               ">>> _ = _check_own_work('04_memory', 'checkpointed_layer_inputs', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
