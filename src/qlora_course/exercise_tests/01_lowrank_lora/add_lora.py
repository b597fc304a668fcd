OK_FORMAT = True

test = {   'name': 'add_lora',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _ = torch.manual_seed(0)\n'
                                               ">>> _net = nn.ModuleDict({'block': nn.ModuleDict({'q_proj': nn.Linear(4, 4), 'xq_proj': nn.Linear(4, 4), 'mlp': nn.ModuleDict({'up': nn.Linear(4, "
                                               "6)})}), 'head': nn.Linear(4, 2), 'norm': nn.LayerNorm(4)})\n"
                                               ">>> _names = add_lora(_net, ['q_proj', 'up'], r=2, alpha=4.0)\n"
                                               ">>> assert isinstance(_names, (list, tuple)), f'add_lora returns the list of wrapped names, got {type(_names).__name__}'\n"
                                               ">>> assert sorted(_names) == ['block.mlp.up', 'block.q_proj'], f'with targets q_proj and up, wrap block.q_proj and block.mlp.up (nested ones too); you "
                                               "returned {sorted(_names)}'\n"
                                               ">>> assert isinstance(_net['block']['q_proj'], LoRALayer) and isinstance(_net['block']['mlp']['up'], LoRALayer), 'the matching layers must be replaced "
                                               "in the model by LoRALayer'\n"
                                               ">>> assert isinstance(_net['block']['xq_proj'], nn.Linear), 'a target matches a whole dotted part of the name: q_proj must not catch xq_proj'\n"
                                               ">>> assert isinstance(_net['head'], nn.Linear), 'a layer no target names stays as it is'\n"
                                               '>>> _trainable = sum((p.numel() for p in _net.parameters() if p.requires_grad))\n'
                                               ">>> assert _trainable == 2 * (4 + 4) + 2 * (4 + 6), f'only lora_A and lora_B train: 36 parameters here, got {_trainable} (freeze everything else)'\n"
                                               ">>> _net2 = nn.ModuleDict({'layers': nn.ModuleList([nn.ModuleDict({'v_proj': nn.Linear(4, 4)}) for _ in range(2)])})\n"
                                               ">>> _names = add_lora(_net2, ['layers.1.v_proj'], r=2, alpha=4.0)\n"
                                               ">>> assert list(_names) == ['layers.1.v_proj'] and isinstance(_net2['layers'][0]['v_proj'], nn.Linear), 'a full dotted name as target wraps that one "
                                               "layer only'\n"
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'add_lora', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
