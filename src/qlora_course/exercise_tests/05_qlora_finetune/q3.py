OK_FORMAT = True

test = {   'name': 'q3',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> targets = lora_target_modules(model)\n'
                                               ">>> assert 'lm_head' not in targets, 'lm_head is not adapted'\n"
                                               ">>> assert {'q_proj', 'v_proj'} <= set(targets) and len(targets) == len(set(targets)), 'distinct short names'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
