OK_FORMAT = True

test = {   'name': 'qlora_bnb_config',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> _c = qlora_bnb_config(torch.bfloat16)\n'
                                               ">>> assert isinstance(_c, BitsAndBytesConfig), f'return a transformers BitsAndBytesConfig, got {type(_c).__name__}'\n"
                                               ">>> assert _c.load_in_4bit and (not _c.load_in_8bit), '4-bit loading'\n"
                                               ">>> assert _c.bnb_4bit_quant_type == 'nf4', 'NF4, not the default FP4'\n"
                                               ">>> assert _c.bnb_4bit_use_double_quant, 'double quantization is off by default'\n"
                                               ">>> _ = _check_own_work('05_qlora_finetune', 'qlora_bnb_config', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
