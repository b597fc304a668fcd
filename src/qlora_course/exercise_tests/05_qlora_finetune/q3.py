OK_FORMAT = True

test = {   'name': 'q3',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> _t = lora_target_modules(load_base())\n'
                                               ">>> assert isinstance(_t, list) and all((isinstance(n, str) for n in _t)), 'return a list of names (strings)'\n"
                                               ">>> assert 'lm_head' not in _t, 'lm_head is not adapted'\n"
                                               ">>> assert {'q_proj', 'v_proj'} <= set(_t) and len(_t) == len(set(_t)), 'distinct short names'\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
