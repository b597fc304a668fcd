OK_FORMAT = True

test = {   'name': 'adapter_only',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               ">>> _sd = {'m.q_proj.base_layer.weight': torch.zeros(2), 'm.q_proj.lora_A.default.weight': torch.ones(2), 'm.q_proj.lora_A.default2.weight': "
                                               'torch.full((2,), 2.0)}\n'
                                               '>>> _got = adapter_only(_sd)\n'
                                               ">>> assert isinstance(_got, dict), f'return a dict, got {type(_got).__name__}'\n"
                                               '>>> assert list(_got) == [\'m.q_proj.lora_A.weight\'], f"expected only \'m.q_proj.lora_A.weight\', got {list(_got)}"\n'
                                               '>>> assert torch.equal(_got[\'m.q_proj.lora_A.weight\'], torch.ones(2)), "the tensor is the adapter\'s own"\n'
                                               ">>> assert list(adapter_only(_sd, 'default2')) == ['m.q_proj.lora_A.weight'], 'the adapter is chosen by its name'\n"
                                               ">>> _ = _check_own_work('07_fsdp_qlora', 'adapter_only', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
