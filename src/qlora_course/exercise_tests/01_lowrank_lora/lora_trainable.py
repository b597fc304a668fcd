OK_FORMAT = True

test = {   'name': 'lora_trainable',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from transformers import LlamaConfig as _LlamaConfig\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _7b = _LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)\n'
                                               ">>> _n = _checks.expect_int(lora_trainable(_7b, 8, ['q_proj', 'v_proj']), 'lora_trainable(Llama-2-7B, 8, q and v)')\n"
                                               ">>> assert _n == 4194304, f'r = 8 on q and v of Llama-2-7B: 32 layers x 2 x 8 x (4096 + 4096) = 4,194,304, got {_n:,}'\n"
                                               ">>> _n = _checks.expect_int(lora_trainable(_7b, 8, ['down_proj']), 'lora_trainable(Llama-2-7B, 8, down)')\n"
                                               ">>> assert _n == 32 * 8 * (11008 + 4096), f'down_proj maps 11008 -> 4096, in all 32 layers: got {_n:,}'\n"
                                               '>>> _8b = _LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8)\n'
                                               ">>> _n = _checks.expect_int(lora_trainable(_8b, 16, ['k_proj', 'v_proj']), 'lora_trainable(Llama-3-8B, 16, k and v)')\n"
                                               ">>> assert _n == 5242880, f'Llama 3 8B has 8 key/value heads of 128: k and v map 4096 -> 1024; expected 5,242,880, got {_n:,}'\n"
                                               '>>> _hd = _LlamaConfig(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256)\n'
                                               ">>> _n = _checks.expect_int(lora_trainable(_hd, 8, ['q_proj', 'o_proj']), 'lora_trainable(head_dim 256, 8, q and o)')\n"
                                               ">>> assert _n == 1810432, f'with head_dim 256 and 8 heads, q maps 2304 -> 2048 and o 2048 -> 2304: 1,810,432, got {_n:,}'\n"
                                               ">>> _ = _check_own_work('01_lowrank_lora', 'lora_trainable', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
