OK_FORMAT = True

test = {   'name': 'completion_only_example',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               ">>> _ex = completion_only_example(tokenizer, 'Question: Is Oslo a home?\\nAnswer:', ' home')\n"
                                               ">>> assert isinstance(_ex, dict) and {'input_ids', 'labels'} <= set(_ex), 'return a dict with input_ids and labels'\n"
                                               ">>> assert all((isinstance(_ex[k], list) for k in ('input_ids', 'labels'))), 'input_ids and labels are lists of ints'\n"
                                               ">>> assert len(_ex['input_ids']) == len(_ex['labels']), 'one label per token'\n"
                                               ">>> assert _ex['input_ids'][-1] == tokenizer.eos_token_id and _ex['labels'][-1] == tokenizer.eos_token_id, 'the last token is EOS, and it is trained'\n"
                                               ">>> assert _ex['labels'][0] == -100, 'prompt tokens are not trained'\n"
                                               ">>> _n_prompt = len(tokenizer('Question: Is Oslo a home?\\nAnswer:')['input_ids'])\n"
                                               ">>> assert _ex['input_ids'][:_n_prompt] == tokenizer('Question: Is Oslo a home?\\nAnswer:')['input_ids'], 'the prompt comes first, tokenized as usual "
                                               "(with <s>)'\n"
                                               ">>> assert all((label == -100 for label in _ex['labels'][:_n_prompt])), 'every prompt token has label -100'\n"
                                               '>>> assert _ex[\'labels\'][_n_prompt:] == _ex[\'input_ids\'][_n_prompt:] and len(_ex[\'labels\']) > _n_prompt + 1, "the completion\'s tokens (not only '
                                               'the EOS) are trained: their labels equal their ids"\n'
                                               ">>> _ = _check_own_work('05_qlora_finetune', 'completion_only_example', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
