OK_FORMAT = True

test = {   'name': 'first_departure',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               ">>> assert first_departure([3.0, 2.0, 1.0], [3.0, 2.0, 1.0], 0.0001) is None, 'the same losses never depart'\n"
                                               ">>> assert first_departure([3.0, 2.0, 1.0], [3.0, 2.5, 1.0], 0.0001) == 1, 'steps count from 0: step 1 departs'\n"
                                               ">>> assert first_departure([3.0, 2.0, 1.0], [3.0, 1.5, 1.0], 0.0001) == 1, 'a loss that drops too fast departs too'\n"
                                               ">>> assert first_departure([3.0, 2.0], [3.0, float('nan')], 0.0001) == 1, 'a NaN is a departure'\n"
                                               ">>> assert first_departure([3.0, 2.0, 1.0], [3.0, 2.0], 0.0001) == 2, 'the step a run lacks is a departure'\n"
                                               ">>> assert first_departure([50.0, 49.0], [50.0, 49.001], 0.0001) == 1, 'tol is absolute: 0.001 apart is more than 1e-4'\n"
                                               ">>> _ = _check_own_work('07_fsdp_qlora', 'first_departure', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
