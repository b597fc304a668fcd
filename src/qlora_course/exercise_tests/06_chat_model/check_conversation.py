OK_FORMAT = True

test = {   'name': 'check_conversation',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               ">>> _ok = data['train'][0]['messages']\n"
                                               ">>> assert check_conversation(_ok) is None, f'a generated conversation is fine, got {check_conversation(_ok)!r}'\n"
                                               ">>> assert check_conversation([]) == 'no messages', 'an empty list has no messages'\n"
                                               ">>> _cases = {'message without role/content': [{'role': 'user'}, {'role': 'assistant', 'content': 'home'}], 'unknown role': [{'role': 'human', "
                                               "'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}], 'empty content': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': "
                                               "'   '}], 'roles out of order': _ok[:-1]}\n"
                                               '>>> for _want, _m in _cases.items():\n'
                                               '...     _got = check_conversation(_m)\n'
                                               "...     assert _got == _want, f'{_m}: expected {_want!r}, got {_got!r}'\n"
                                               ">>> _both = [{'role': 'user', 'content': ''}, {'role': 'bot', 'content': 'x'}]\n"
                                               ">>> assert check_conversation(_both) == 'unknown role', 'roles are checked over all messages before contents'\n"
                                               ">>> _ = _check_own_work('06_chat_model', 'check_conversation', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
