OK_FORMAT = True

test = {   'name': 'q1',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': ">>> _ex = completion_only_example(tokenizer, 'Question: Is Oslo a home?\\nAnswer:', ' home')\n"
                                               ">>> assert len(_ex['input_ids']) == len(_ex['labels']), 'one label per token'\n"
                                               ">>> assert _ex['input_ids'][-1] == tokenizer.eos_token_id and _ex['labels'][-1] == tokenizer.eos_token_id, 'the last token is EOS, and it is trained'\n"
                                               ">>> assert _ex['labels'][0] == -100, 'prompt tokens are not trained'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
