OK_FORMAT = True

test = {   'name': 'qlora_sft_config',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> import dataclasses as _dataclasses\n'
                                               '>>> _s = _dataclasses.replace(settings, max_steps=200, learning_rate=0.0003, batch_size=2, grad_accum=8, max_length=256)\n'
                                               ">>> _cpu = {'use_cpu': True, 'report_to': 'none', 'seed': 7}\n"
                                               '>>> _cases = ((torch.float16, (True, False)), (torch.bfloat16, (False, True)), (torch.float32, (False, False)))\n'
                                               '>>> for _dtype, _flags in _cases:\n'
                                               '...     _c = qlora_sft_config(tempfile.mkdtemp(), _s, _dtype, **_cpu)\n'
                                               "...     assert isinstance(_c, SFTConfig), f'return a trl.SFTConfig, got {type(_c).__name__}'\n"
                                               '...     _got = (_c.max_steps, _c.learning_rate, _c.per_device_train_batch_size, _c.gradient_accumulation_steps)\n'
                                               '...     _got += (_c.max_length,)\n'
                                               "...     assert _got == (200, 0.0003, 2, 8, 256), f'max_steps, learning_rate, batch, accumulation, max_length: got {_got}'\n"
                                               "...     assert _c.completion_only_loss is True, 'completion_only_loss=True: the loss on the answer only'\n"
                                               "...     assert str(_c.optim.value) == 'paged_adamw_32bit', f'the paged 32-bit AdamW, got {_c.optim.value}'\n"
                                               "...     assert str(_c.lr_scheduler_type.value) == 'constant_with_warmup', 'a constant learning rate after a warmup'\n"
                                               "...     assert _c.get_warmup_steps(200) == 6, f'warm up for 3% of the steps (6 of 200), got {_c.get_warmup_steps(200)}'\n"
                                               "...     assert _c.max_grad_norm == 0.3, f'clip gradients at 0.3, got {_c.max_grad_norm}'\n"
                                               "...     assert (_c.fp16, _c.bf16) == _flags, f'{_dtype}: fp16={_flags[0]}, bf16={_flags[1]}; got {(_c.fp16, _c.bf16)}'\n"
                                               "...     assert _c.seed == 7 and _c.use_cpu, 'pass **course on to SFTConfig'\n"
                                               ">>> _ = _check_own_work('05_qlora_finetune', 'qlora_sft_config', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
