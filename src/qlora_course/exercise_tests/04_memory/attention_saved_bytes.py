OK_FORMAT = True

test = {   'name': 'attention_saved_bytes',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _b = _checks.expect_int(attention_saved_bytes(LLAMA7B, 2), 'attention_saved_bytes(LLAMA7B, 2)')\n"
                                               ">>> assert _b == 2 * 4 * 4096 + 4 * 32, f'LLaMA-7B in 16 bits: q, k, v and output of 4096 values + 32 float32 = 32,896, got {_b:,}'\n"
                                               '>>> _gqa = LlamaConfig(hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4, vocab_size=1000)\n'
                                               ">>> _b = _checks.expect_int(attention_saved_bytes(_gqa, 4), 'attention_saved_bytes(8 query / 4 kv heads, 4)')\n"
                                               '>>> _wide = LlamaConfig(hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4, head_dim=64, '
                                               'vocab_size=1000)\n'
                                               ">>> _w = _checks.expect_int(attention_saved_bytes(_wide, 2), 'attention_saved_bytes(config with head_dim=64, 2)')\n"
                                               ">>> assert _w == 2 * (512 + 256 + 256 + 512) + 4 * 8, f'a config may set its own head_dim (here 64, not 256 / 8 = 32): use config.head_dim when it is "
                                               "given; expected 3,104 bytes, got {_w:,}'\n"
                                               ">>> assert _b == 4 * (256 + 128 + 128 + 256) + 4 * 8, f'with 8 query heads and 4 key/value heads of 32 dims, k and v are 128 values each: 3,104 bytes, "
                                               "got {_b:,}'\n"
                                               ">>> _ = _check_own_work('04_memory', 'attention_saved_bytes', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
