OK_FORMAT = True

test = {   'name': 'render_chat',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               ">>> _m = [{'role': 'user', 'content': 'Is Oslo a home?'}, {'role': 'assistant', 'content': 'home'}]\n"
                                               '>>> _got = render_chat(_m)\n'
                                               ">>> assert isinstance(_got, str), f'render_chat should return a str, got {type(_got).__name__}'\n"
                                               ">>> _want = '<s>User: Is Oslo a home?</s>Assistant: home</s>'\n"
                                               ">>> assert _got == _want, f'expected {_want!r}, got {_got!r}'\n"
                                               '>>> _got = render_chat(_m[:1], add_generation_prompt=True)\n'
                                               ">>> assert _got == '<s>User: Is Oslo a home?</s>Assistant:', f'the generation prompt ends with the header, got {_got!r}'\n"
                                               ">>> _sys = [{'role': 'system', 'content': 'Be brief.'}] + _m\n"
                                               ">>> assert render_chat(_sys).startswith('<s>System: Be brief.</s>User:'), f'a system message: got {render_chat(_sys)!r}'\n"
                                               ">>> _ = _check_own_work('06_chat_model', 'render_chat', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
