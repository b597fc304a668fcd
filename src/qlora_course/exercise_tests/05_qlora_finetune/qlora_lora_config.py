OK_FORMAT = True

test = {   'name': 'qlora_lora_config',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> import dataclasses as _dataclasses\n'
                                               '>>> _c = qlora_lora_config(_dataclasses.replace(settings, r=4, lora_alpha=12, lora_dropout=0.1))\n'
                                               ">>> assert isinstance(_c, LoraConfig), f'return a peft.LoraConfig, got {type(_c).__name__}'\n"
                                               ">>> assert (_c.r, _c.lora_alpha, _c.lora_dropout) == (4, 12, 0.1), f'rank, alpha and dropout come from the settings: got r={_c.r}, "
                                               "lora_alpha={_c.lora_alpha}, lora_dropout={_c.lora_dropout}'\n"
                                               '>>> _peft = get_peft_model(AutoModelForCausalLM.from_pretrained(course_model_path(), dtype=compute_dtype), _dataclasses.replace(_c))\n'
                                               ">>> _adapted = sorted({_n.split('.lora_A.')[0].rsplit('.', 1)[-1] for _n, _ in _peft.named_parameters() if 'lora_A' in _n})\n"
                                               ">>> assert _adapted == ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'], f'adapt every linear layer but lm_head; yours "
                                               "adapts {_adapted}'\n"
                                               '>>> assert type(_peft).__name__ == \'PeftModelForCausalLM\', "set task_type=\'CAUSAL_LM\'"\n'
                                               ">>> _ = _check_own_work('05_qlora_finetune', 'qlora_lora_config', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
