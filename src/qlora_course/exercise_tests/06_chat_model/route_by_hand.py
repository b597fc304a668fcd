OK_FORMAT = True

test = {   'name': 'route_by_hand',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> from qlora_course.exercises.chat_model import two_adapter_model as _two_adapter_model\n'
                                               '>>> _g = torch.Generator().manual_seed(0)\n'
                                               ">>> _model, _cfg = _two_adapter_model(_g, 'style')\n"
                                               '>>> _ids = torch.randint(0, _cfg.vocab_size, (5, 6), generator=_g)\n'
                                               ">>> _names = ['task', '__base__', 'task', 'style', 'style']\n"
                                               '>>> with torch.no_grad():\n'
                                               "...     _got = _checks.expect_tensor(route_by_hand(_model, _ids, _names), 'route_by_hand(...)', shape=(5, 6, _cfg.vocab_size))\n"
                                               '...     _want = _model(input_ids=_ids, adapter_names=_names).logits\n'
                                               '...     assert _model.active_adapter == \'style\', f"leave the active adapter as it was (\'style\'), not {_model.active_adapter!r}"\n'
                                               '...     for _i, _n in enumerate(_names):\n'
                                               "...         assert torch.allclose(_got[_i], _want[_i], atol=0.0001), f'row {_i} should go through {_n!r}'\n"
                                               ">>> _ = _check_own_work('06_chat_model', 'route_by_hand', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
