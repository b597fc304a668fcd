OK_FORMAT = True

test = {   'name': 'rank_r_approx',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _g = torch.Generator().manual_seed(1)\n'
                                               '>>> _W = torch.randn(20, 12, generator=_g, dtype=torch.float64)\n'
                                               ">>> _Wr = _checks.expect_tensor(rank_r_approx(_W, 3), 'rank_r_approx(W, 3)', shape=_W.shape, dtype=_W.dtype)\n"
                                               ">>> assert torch.linalg.matrix_rank(_Wr).item() == 3, 'the result should have rank exactly r'\n"
                                               '>>> _S = torch.linalg.svdvals(_W)\n'
                                               '>>> _err = torch.linalg.norm(_W - _Wr)\n'
                                               ">>> assert torch.isclose(_err, _S[3:].square().sum().sqrt()), 'the error should be sqrt(sum of the dropped singular values squared): keep the LARGEST "
                                               "r values'\n"
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'rank_r_approx', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
