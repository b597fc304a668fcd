OK_FORMAT = True

test = {   'name': 'assistant_only_labels',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               ">>> _m = [{'role': 'user', 'content': 'Is Oslo a home?'}, {'role': 'assistant', 'content': 'home'}]\n"
                                               '>>> _got = assistant_only_labels(tokenizer, _m)\n'
                                               ">>> assert isinstance(_got, dict) and {'input_ids', 'labels'} <= set(_got), 'return a dict with input_ids and labels'\n"
                                               ">>> _ids, _labels = ([int(t) for t in _got['input_ids']], [int(t) for t in _got['labels']])\n"
                                               '>>> assert _ids == tokenizer(render_chat(_m), add_special_tokens=False)[\'input_ids\'], "input_ids: the rendered text\'s ids"\n'
                                               '>>> _trained = [t for t in _labels if t != -100]\n'
                                               ">>> _want = tokenizer(' home</s>', add_special_tokens=False)['input_ids']\n"
                                               ">>> assert _trained == _want, f'trained: {tokenizer.convert_ids_to_tokens(_trained)}, expected {tokenizer.convert_ids_to_tokens(_want)}: the answer "
                                               "with its space and its </s>, nothing else'\n"
                                               ">>> _two = _m + [{'role': 'user', 'content': 'And Tom?'}, {'role': 'assistant', 'content': 'job'}]\n"
                                               ">>> _trained = [t for t in assistant_only_labels(tokenizer, _two)['labels'] if t != -100]\n"
                                               ">>> assert _trained == _want + tokenizer(' job</s>', add_special_tokens=False)['input_ids'], 'both answers are trained'\n"
                                               ">>> _ = _check_own_work('06_chat_model', 'assistant_only_labels', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
