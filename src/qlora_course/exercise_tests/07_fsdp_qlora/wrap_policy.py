OK_FORMAT = True

test = {   'name': 'wrap_policy',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> _lin = torch.nn.Linear(4, 4)\n'
                                               ">>> assert wrap_policy(_lin), 'a leaf whose weight trains is a unit of its own'\n"
                                               '>>> _lin.weight.requires_grad_(False)\n'
                                               '>>> assert not wrap_policy(_lin), "a frozen leaf stays in its layer\'s unit"\n'
                                               ">>> assert not wrap_policy(torch.nn.Sequential(torch.nn.Linear(4, 4))), 'a module with children is not a LoRA leaf'\n"
                                               ">>> assert not wrap_policy(torch.nn.Dropout()), 'no weight, no unit'\n"
                                               '>>> _tiny = LlamaConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_key_value_heads=1)\n'
                                               ">>> assert wrap_policy(LlamaDecoderLayer(_tiny, layer_idx=0)), 'each decoder layer is a unit: one all-gather a layer'\n"
                                               ">>> _ = _check_own_work('07_fsdp_qlora', 'wrap_policy', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
