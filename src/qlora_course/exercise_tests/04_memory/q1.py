OK_FORMAT = True

test = {   'name': 'q1',
    'points': 1,
    'suites': [   {   'cases': [{'code': ">>> assert llama_param_count(LLAMA7B) == 6738415616, 'LLaMA-7B has 6,738,415,616 parameters'\n", 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
