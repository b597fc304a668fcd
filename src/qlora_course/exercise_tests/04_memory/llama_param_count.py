OK_FORMAT = True

test = {   'name': 'llama_param_count',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _n = _checks.expect_int(llama_param_count(LLAMA7B), 'llama_param_count(LLAMA7B)')\n"
                                               ">>> assert _n == 6738415616, f'LLaMA-7B has 6,738,415,616 parameters, got {_n:,}'\n"
                                               '>>> _small = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, '
                                               'tie_word_embeddings=True)\n'
                                               ">>> _n = _checks.expect_int(llama_param_count(_small), 'llama_param_count(small GQA config)')\n"
                                               ">>> assert _n == 152384, f'a 2-layer model with 2 key/value heads of 8 and tied embeddings has 152,384 parameters, got {_n:,}: k and v project to "
                                               "num_key_value_heads x head_dim, and a tied lm_head is the embedding itself'\n"
                                               ">>> _ = _check_own_work('04_memory', 'llama_param_count', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
