OK_FORMAT = True

test = {   'name': 'merged_weight',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _g = torch.Generator().manual_seed(4)\n'
                                               '>>> _W, _A, _B = (torch.randn(6, 10, generator=_g), torch.randn(2, 10, generator=_g), torch.randn(6, 2, generator=_g))\n'
                                               ">>> _M = _checks.expect_tensor(merged_weight(_W, _A, _B, 3.0, 2), 'merged_weight(...)', shape=_W.shape)\n"
                                               '>>> _x = torch.randn(3, 10, generator=_g)\n'
                                               '>>> assert torch.allclose(_x @ _M.T, _x @ _W.T + 1.5 * (_x @ _A.T) @ _B.T, atol=0.0001), "merged layer\'s output differs from the unmerged LoRA '
                                               'output: W + (alpha/r) * B @ A, with alpha=3, r=2: 1.5"\n'
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'merged_weight', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
