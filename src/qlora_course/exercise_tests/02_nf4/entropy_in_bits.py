OK_FORMAT = True

test = {   'name': 'entropy_in_bits',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _h = _checks.expect_number(entropy_in_bits(torch.tensor([3, 3, 3, 3])), 'entropy_in_bits([3, 3, 3, 3])')\n"
                                               ">>> assert abs(_h - 2.0) < 1e-06, f'4 equally likely values carry 2 bits, got {_h}'\n"
                                               ">>> _h = _checks.expect_number(entropy_in_bits(torch.tensor([7, 0, 0, 7])), 'entropy_in_bits([7, 0, 0, 7])')\n"
                                               ">>> assert abs(_h - 1.0) < 1e-06, f'zero counts must be skipped (0 log 0 = 0): expected 1 bit, got {_h}'\n"
                                               ">>> _ = _check_own_work('02_nf4', 'entropy_in_bits', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
