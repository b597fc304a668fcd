OK_FORMAT = True

test = {   'name': 'merge_adapter_16bit',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> import tempfile as _tempfile\n'
                                               '>>> from peft import LoraConfig as _LoraConfig\n'
                                               '>>> from peft import get_peft_model as _get_peft_model\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _ = torch.manual_seed(0)\n'
                                               '>>> _peft = _get_peft_model(AutoModelForCausalLM.from_pretrained(course_model_path(), dtype=torch.bfloat16), _LoraConfig(r=4, lora_alpha=8, '
                                               "target_modules=['q_proj', 'down_proj']))\n"
                                               '>>> for _n, _p in _peft.named_parameters():\n'
                                               "...     if 'lora_B' in _n:\n"
                                               '...         _ = torch.nn.init.normal_(_p, std=0.5)\n'
                                               '>>> _dir = Path(_tempfile.mkdtemp())\n'
                                               '>>> _ = _peft.save_pretrained(_dir)\n'
                                               '>>> _want = _peft.merge_and_unload()\n'
                                               '>>> _got = merge_adapter_16bit(AutoModelForCausalLM.from_pretrained(course_model_path(), dtype=torch.bfloat16), _dir, 2.0)\n'
                                               ">>> assert isinstance(_got, torch.nn.Module), f'return the model, got {type(_got).__name__}'\n"
                                               '>>> _want_params = dict(_want.named_parameters())\n'
                                               '>>> for _name, _p in _got.named_parameters():\n'
                                               "...     _w = _checks.expect_tensor(_p, f'the merged {_name}')\n"
                                               '...     assert _w.dtype == torch.bfloat16, f"{_name}: the merged weight stays in the model\'s 16-bit dtype, got {_w.dtype}"\n'
                                               "...     if 'q_proj' in _name or 'down_proj' in _name:\n"
                                               '...         assert torch.allclose(_w.float(), _want_params[_name].float(), rtol=0.016, atol=0.0001), f"{_name} differs from PEFT\'s merge: W + scaling '
                                               '* B @ A, for every adapted layer"\n'
                                               '...     else:\n'
                                               "...         assert torch.equal(_w, _want_params[_name]), f'{_name} has no adapter and must not change'\n"
                                               ">>> _ = _check_own_work('05_qlora_finetune', 'merge_adapter_16bit', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
