OK_FORMAT = True

test = {   'name': 'normal_float_code',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _code = _checks.expect_tensor(normal_float_code(), 'normal_float_code()', shape=(16,), dtype=torch.float32)\n"
                                               ">>> assert (_code[1:] > _code[:-1]).all(), 'the values must be sorted, without repeats'\n"
                                               ">>> assert _code[0] == -1 and _code[-1] == 1, 'divide by the largest value so the code spans [-1, 1]'\n"
                                               ">>> assert (_code == 0).sum() == 1 and (_code < 0).sum() == 7, '7 negative values, an exact zero, 8 positive ones'\n"
                                               ">>> _ = _check_own_work('02_nf4', 'normal_float_code', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
