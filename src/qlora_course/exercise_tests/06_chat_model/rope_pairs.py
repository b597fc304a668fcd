OK_FORMAT = True

test = {   'name': 'rope_pairs',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _w = torch.arange(8.0).reshape(8, 1)\n'
                                               ">>> _got = _checks.expect_tensor(rope_pairs(_w, 1), 'rope_pairs(arange(8), 1)', shape=(8, 1))\n"
                                               ">>> assert _got.flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7], f'one head of 8: got {_got.flatten().tolist()}'\n"
                                               ">>> _got = _checks.expect_tensor(rope_pairs(_w, 2), 'rope_pairs(arange(8), 2)', shape=(8, 1))\n"
                                               ">>> assert _got.flatten().tolist() == [0, 2, 1, 3, 4, 6, 5, 7], f'two heads of 4, each on its own: got {_got.flatten().tolist()}'\n"
                                               '>>> _w = torch.randn(16, 5)\n'
                                               ">>> assert torch.equal(rope_pairs(_w, 2)[:, 3], rope_pairs(_w[:, 3:4], 2)[:, 0]), 'rows move whole: columns stay'\n"
                                               ">>> _ = _check_own_work('06_chat_model', 'rope_pairs', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
