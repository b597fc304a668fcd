OK_FORMAT = True

test = {   'name': 'extract_lora',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _g = torch.Generator().manual_seed(5)\n'
                                               '>>> _W0 = torch.randn(12, 9, generator=_g, dtype=torch.float64)\n'
                                               '>>> _u, _v = (torch.randn(12, 2, generator=_g, dtype=torch.float64), torch.randn(2, 9, generator=_g, dtype=torch.float64))\n'
                                               '>>> _out = extract_lora(_W0 + _u @ _v, _W0, 2, 5.0)\n'
                                               ">>> assert isinstance(_out, (tuple, list)) and len(_out) == 2, 'return the pair (A, B)'\n"
                                               ">>> _A = _checks.expect_tensor(_out[0], 'A', shape=(2, 9), dtype=torch.float64)\n"
                                               ">>> _B = _checks.expect_tensor(_out[1], 'B', shape=(12, 2), dtype=torch.float64)\n"
                                               ">>> assert torch.allclose(_W0 + 2.5 * _B @ _A, _W0 + _u @ _v, atol=1e-09), 'a rank-2 update is recovered exactly at r = 2: W0 + (alpha / r) B A must "
                                               "equal W_tuned (mind the scaling)'\n"
                                               '>>> _full = _W0 + torch.randn(12, 9, generator=_g, dtype=torch.float64)\n'
                                               '>>> _A, _B = extract_lora(_full, _W0, 3, 3.0)\n'
                                               '>>> _best = torch.linalg.matrix_norm(_full - _W0 - lowrank.low_rank_approx(_full - _W0, 3))\n'
                                               '>>> _yours = torch.linalg.matrix_norm(_full - _W0 - _B @ _A)\n'
                                               ">>> assert _yours <= _best * (1 + 1e-09), f'for a full-rank update the best rank-3 adapter leaves an error of {_best:.4f}; yours leaves {_yours:.4f}'\n"
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'extract_lora', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
