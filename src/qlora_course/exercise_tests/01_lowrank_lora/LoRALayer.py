OK_FORMAT = True

test = {   'name': 'LoRALayer',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _ = torch.manual_seed(0)\n'
                                               '>>> _base = nn.Linear(20, 12)\n'
                                               '>>> _layer = LoRALayer(_base, r=4, alpha=8.0)\n'
                                               ">>> assert isinstance(_layer, nn.Module), f'LoRALayer must be an nn.Module, got {type(_layer).__name__}'\n"
                                               ">>> for _name in ('base', 'lora_A', 'lora_B', 'scaling'):\n"
                                               "...     assert hasattr(_layer, _name), f'the layer needs an attribute {_name!r}'\n"
                                               ">>> assert _layer.base is _base, 'keep the wrapped layer itself as self.base'\n"
                                               ">>> _ = _checks.expect_tensor(_layer.lora_A.weight, 'lora_A.weight', shape=(4, 20))\n"
                                               ">>> _ = _checks.expect_tensor(_layer.lora_B.weight, 'lora_B.weight', shape=(12, 4))\n"
                                               ">>> assert not any((p.requires_grad for p in _base.parameters())), 'freeze the base layer (weight and bias)'\n"
                                               ">>> assert _layer.lora_A.weight.requires_grad and _layer.lora_B.weight.requires_grad, 'A and B are trained'\n"
                                               ">>> assert torch.count_nonzero(_layer.lora_B.weight) == 0, 'B starts at zero'\n"
                                               ">>> assert _layer.lora_A.weight.abs().max() <= 1 / 20 ** 0.5 and _layer.lora_A.weight.std() > 0.1, 'A starts kaiming-uniform (a=sqrt(5)): uniform in "
                                               "[-1/sqrt(in), 1/sqrt(in)]'\n"
                                               '>>> _x = torch.randn(3, 20)\n'
                                               ">>> _y = _checks.expect_tensor(_layer(_x), 'LoRALayer(...)(x)', shape=(3, 12))\n"
                                               ">>> assert torch.equal(_y, _base(_x)), 'a fresh layer computes exactly what the base layer does'\n"
                                               ">>> assert abs(_checks.expect_number(_layer.scaling, 'scaling') - 2.0) < 1e-12, 'scaling is alpha / r = 8 / 4'\n"
                                               '>>> _rs = LoRALayer(nn.Linear(20, 12), r=4, alpha=8.0, use_rslora=True)\n'
                                               ">>> assert abs(_checks.expect_number(_rs.scaling, 'rsLoRA scaling') - 4.0) < 1e-12, 'rsLoRA: alpha / sqrt(r) = 8 / 2'\n"
                                               '>>> with torch.no_grad():\n'
                                               '...     _ = _layer.lora_B.weight.normal_()\n'
                                               '>>> _want = _base(_x) + 2.0 * _x @ (_layer.lora_B.weight @ _layer.lora_A.weight).T\n'
                                               ">>> assert torch.allclose(_layer(_x), _want, atol=1e-05), 'forward: base(x) + scaling * B A x'\n"
                                               '>>> _ = _layer.merge()\n'
                                               ">>> assert torch.allclose(_layer(_x), _want, atol=1e-05), 'after merge() the output must not change'\n"
                                               '>>> _ = _layer.unmerge()\n'
                                               '>>> assert torch.allclose(_base.weight @ torch.eye(20), _layer.base.weight) and torch.allclose(_layer(_x), _want, atol=1e-05)\n'
                                               '>>> _drop = LoRALayer(nn.Linear(20, 12), r=4, alpha=8.0, dropout=0.9).train()\n'
                                               '>>> assert torch.equal(_drop(_x), _drop.base(_x)), "with B = 0 the output is the base layer\'s even in training: dropout belongs to the LoRA branch '
                                               'only"\n'
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'LoRALayer', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
