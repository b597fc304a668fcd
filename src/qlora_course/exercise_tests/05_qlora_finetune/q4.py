OK_FORMAT = True

test = {   'name': 'q4',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> _t = lora_target_modules(load_base())\n'
                                               ">>> assert isinstance(_t, list) and all((isinstance(n, str) for n in _t)), 'return a list of names (strings)'\n"
                                               ">>> assert 'lm_head' not in _t, 'lm_head is not adapted'\n"
                                               ">>> assert {'q_proj', 'v_proj'} <= set(_t) and len(_t) == len(set(_t)), 'distinct short names'\n"
                                               '>>> assert {\'gate_proj\', \'up_proj\', \'down_proj\'} <= set(_t), f"every linear layer but lm_head, the MLP\'s too (gate_proj, up_proj, down_proj); '
                                               'got {_t}"\n'
                                               ">>> assert _t == sorted(_t), 'return the names sorted'\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
