OK_FORMAT = True

test = {   'name': 'DoRALayer',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _ = torch.manual_seed(21)\n'
                                               '>>> _base = nn.Linear(10, 6)\n'
                                               '>>> _layer = DoRALayer(copy.deepcopy(_base), r=2, alpha=4.0)\n'
                                               ">>> assert isinstance(_layer, LoRALayer), 'DoRALayer is a subclass of your LoRALayer'\n"
                                               ">>> _m = _checks.expect_tensor(getattr(_layer, 'magnitude', None), 'magnitude', shape=(6,))\n"
                                               ">>> assert isinstance(_layer.magnitude, nn.Parameter) and _layer.magnitude.requires_grad, 'magnitude is a trained nn.Parameter'\n"
                                               ">>> assert torch.allclose(_m, torch.linalg.norm(_base.weight, dim=1)), 'magnitude starts at the row norms of W0 (one per output)'\n"
                                               '>>> _x = torch.randn(4, 10)\n'
                                               ">>> assert torch.allclose(_layer(_x), _base(_x), atol=1e-06), 'a fresh DoRA layer computes what the base layer does'\n"
                                               '>>> with torch.no_grad():\n'
                                               '...     _ = _layer.lora_B.weight.normal_()\n'
                                               '...     _ = _layer.magnitude.mul_(torch.linspace(0.5, 1.5, 6))\n'
                                               '>>> _W = _base.weight + 2.0 * _layer.lora_B.weight @ _layer.lora_A.weight\n'
                                               '>>> _k = _layer.magnitude / torch.linalg.norm(_W, dim=1)\n'
                                               '>>> _want = _k * (_x @ _W.T) + _base.bias\n'
                                               '>>> _y = _layer(_x)\n'
                                               ">>> assert torch.allclose(_y, _want, atol=1e-05), 'forward: m / ||W0 + sBA||_row times (W0 + sBA) x, plus the bias (not rescaled)'\n"
                                               '>>> _probe = torch.randn(4, 6)\n'
                                               '>>> (_y * _probe).sum().backward()\n'
                                               '>>> _gA = (_k * _probe).T @ _x\n'
                                               '>>> _gA = 2.0 * _layer.lora_B.weight.T @ _gA\n'
                                               ">>> assert _layer.lora_A.weight.grad is not None and torch.allclose(_layer.lora_A.weight.grad, _gA, atol=0.0001), 'the gradient of A treats the norm "
                                               "as a constant: compute it without the graph (torch.no_grad() or .detach())'\n"
                                               '>>> with torch.no_grad():\n'
                                               '...     _ = _layer.eval().merge()\n'
                                               '...     assert torch.allclose(_layer.base.weight, _k[:, None] * _W, atol=1e-05), "merge() writes W\' = m W / ||W|| into the base"\n'
                                               "...     assert torch.allclose(_layer(_x), _want, atol=1e-05), 'after merge() the output must not change'\n"
                                               '...     _ = _layer.unmerge()\n'
                                               "...     assert torch.allclose(_layer.base.weight, _base.weight, atol=1e-05), 'unmerge() gives W0 back'\n"
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'DoRALayer', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
