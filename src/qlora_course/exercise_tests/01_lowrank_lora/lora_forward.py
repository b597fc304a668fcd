OK_FORMAT = True

test = {   'name': 'lora_forward',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _g = torch.Generator().manual_seed(2)\n'
                                               '>>> _x, _W, _b = (torch.randn(5, 12, generator=_g), torch.randn(7, 12, generator=_g), torch.randn(7, generator=_g))\n'
                                               '>>> _A, _B = (torch.randn(3, 12, generator=_g), torch.zeros(7, 3))\n'
                                               ">>> _out = _checks.expect_tensor(lora_forward(_x, _W, _b, _A, _B, alpha=6.0, r=3), 'lora_forward(...)', shape=(5, 7))\n"
                                               '>>> assert torch.allclose(_out, _x @ _W.T + _b, atol=1e-05), "with B = 0 the output must equal the base layer\'s"\n'
                                               '>>> _B = torch.randn(7, 3, generator=_g)\n'
                                               ">>> assert torch.allclose(lora_forward(_x, _W, _b, _A, _B, 5.0, 2), _x @ _W.T + _b + 2.5 * _x @ (_B @ _A).T, atol=0.0001), 'with alpha=5, r=2 the "
                                               "update must be scaled by alpha / r = 2.5 (a true division, not alpha // r)'\n"
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'lora_forward', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
