OK_FORMAT = True

test = {   'name': 'will_it_fit',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> from qlora_course import estimator as _e\n'
                                               '>>> def _check_fit_case(_config, _setup, _what):\n'
                                               "...     _pair = _checks.expect_pair(will_it_fit(_config, _setup, 15000000000.0), f'will_it_fit for {_what}')\n"
                                               "...     _got = _checks.expect_number(_pair[0], f'the bytes needed for {_what}')\n"
                                               "...     _fits = _checks.expect_bool(_pair[1], f'the decision for {_what}')\n"
                                               '...     _est = _e.estimate_training_memory(_config, _setup)\n'
                                               '...     _terms = _e.gpu_terms(_config, _setup)\n'
                                               '...     _want = _est.total + sum((_t.bytes for _t in _terms))\n'
                                               "...     _parts = ', '.join((f'{_p} {getattr(_est, _p) / 1000000000.0:.3f}' for _p in _est.PARTS))\n"
                                               "...     _gpu = ', '.join((f'{_t.name} {_t.bytes / 1000000000.0:.3f}' for _t in _terms))\n"
                                               "...     assert abs(_got / _want - 1) <= 0.005, f'{_what}: {_got / 1000000000.0:.3f} GB, the estimator says {_want / 1000000000.0:.3f} GB. Its parts in "
                                               "GB: {_parts}; its GPU terms in GB: {_gpu}'\n"
                                               "...     assert _fits == (_want <= 15000000000.0), f'{_what} needs {_want / 1000000000.0:.2f} GB: does it fit in 15 GB? you said {_fits}'\n"
                                               ">>> _check_fit_case(LLAMA7B, _e.TrainingSetup('qlora', 1, 512, weight_dtype=torch.float16, lora_r=64, optimizer='adamw32bit', "
                                               "gradient_checkpointing=True), 'LLaMA-7B, r=64 on all linear layers, AdamW32bit, 1 x 512')\n"
                                               ">>> _check_fit_case(LLAMA7B, _e.TrainingSetup('qlora', 2, 1024, lora_r=16, lora_targets=['q_proj', 'v_proj'], optimizer='adamw8bit', "
                                               "gradient_checkpointing=True), 'LLaMA-7B, r=16 on q and v, AdamW8bit, 2 x 1024')\n"
                                               '>>> _check_fit_case(LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, '
                                               "num_key_value_heads=8, tie_word_embeddings=True), _e.TrainingSetup('qlora', 4, 2048, lora_r=16, optimizer='adamw32bit', gradient_checkpointing=True), "
                                               "'a 1B Llama with tied embeddings and grouped-query attention, r=16, 4 x 2048')\n"
                                               ">>> _small = _e.TrainingSetup('qlora', 1, 512, lora_r=64, optimizer='adamw32bit', gradient_checkpointing=True)\n"
                                               ">>> _fits = _checks.expect_pair(will_it_fit(LLAMA7B, _small, 8000000000.0), 'will_it_fit(LLAMA7B, setup, 8e9)')[1]\n"
                                               ">>> assert _checks.expect_bool(_fits, 'the decision') is False, 'LLaMA-7B at r=64 needs about 8.7 GB: not 8 GB'\n"
                                               ">>> _ = _check_own_work('04_memory', 'will_it_fit', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
