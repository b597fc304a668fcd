OK_FORMAT = True

test = {   'name': 'dora_forward',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _g = torch.Generator().manual_seed(21)\n'
                                               '>>> _W0, _b = (torch.randn(6, 10, generator=_g), torch.randn(6, generator=_g))\n'
                                               '>>> _A, _B = (torch.randn(2, 10, generator=_g), torch.zeros(6, 2))\n'
                                               '>>> _x = torch.randn(4, 10, generator=_g)\n'
                                               '>>> _m = torch.linalg.norm(_W0, dim=1)\n'
                                               ">>> _y = _checks.expect_tensor(dora_forward(_x, _W0, _b, _A, _B, _m, 2.0), 'dora_forward(...)', shape=(4, 6))\n"
                                               ">>> assert torch.allclose(_y, _x @ _W0.T + _b, atol=1e-05), 'with B = 0 and m = the row norms of W0, DoRA computes the base layer exactly (norm per "
                                               "ROW, bias unscaled)'\n"
                                               '>>> _y2 = dora_forward(_x, _W0, _b, _A, _B, 2 * _m, 2.0)\n'
                                               '>>> assert torch.allclose(_y2 - _b, 2 * (_y - _b), atol=1e-05), "doubling the magnitude doubles W\'x, not the bias"\n'
                                               '>>> _B = torch.randn(6, 2, generator=_g)\n'
                                               '>>> _Wt = dora_forward(torch.eye(10), _W0, torch.zeros(6), _A, _B, _m, 2.0)\n'
                                               '>>> assert torch.allclose(torch.linalg.norm(_Wt, dim=0), _m, atol=0.0001), "each row of W\' has norm m: divide W0 + sBA (the UPDATED weight) by its '
                                               'own row norms"\n'
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'dora_forward', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
