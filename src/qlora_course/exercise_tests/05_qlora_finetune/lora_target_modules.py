OK_FORMAT = True

test = {   'name': 'lora_target_modules',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course.loading import nf4_config as _nf4_config\n'
                                               '>>> _base4 = AutoModelForCausalLM.from_pretrained(profile.model_path(), quantization_config=_nf4_config(compute_dtype), dtype=compute_dtype, '
                                               'device_map=DEVICE_MAP)\n'
                                               '>>> _t = lora_target_modules(_base4)\n'
                                               ">>> assert isinstance(_t, list) and all((isinstance(n, str) for n in _t)), 'return a list of names (strings)'\n"
                                               ">>> assert 'lm_head' not in _t, 'lm_head is not adapted'\n"
                                               ">>> assert {'q_proj', 'v_proj'} <= set(_t) and len(_t) == len(set(_t)), 'distinct short names'\n"
                                               '>>> assert {\'gate_proj\', \'up_proj\', \'down_proj\'} <= set(_t), f"every linear layer but lm_head, the MLP\'s too (gate_proj, up_proj, down_proj); '
                                               'got {_t}"\n'
                                               ">>> assert _t == sorted(_t), 'return the names sorted'\n"
                                               ">>> _ = _check_own_work('05_qlora_finetune', 'lora_target_modules', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
