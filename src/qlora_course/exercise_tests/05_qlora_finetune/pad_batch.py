OK_FORMAT = True

test = {   'name': 'pad_batch',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               ">>> _b = pad_batch([{'input_ids': [5, 6, 7], 'labels': [-100, 6, 7]}, {'input_ids': [8], 'labels': [8]}], 0)\n"
                                               ">>> assert isinstance(_b, dict) and {'input_ids', 'attention_mask', 'labels'} <= set(_b), 'return a dict with input_ids, attention_mask and labels'\n"
                                               ">>> for _k in ('input_ids', 'attention_mask', 'labels'):\n"
                                               '...     _ = _checks.expect_tensor(_b[_k], _k, shape=(2, 3), dtype=torch.int64)\n'
                                               '>>> assert _b[\'input_ids\'].tolist() == [[5, 6, 7], [8, 0, 0]], f"pad on the RIGHT with pad_id, got {_b[\'input_ids\'].tolist()}"\n'
                                               ">>> assert _b['attention_mask'].tolist() == [[1, 1, 1], [1, 0, 0]], 'attention_mask: 1 on tokens, 0 on padding'\n"
                                               '>>> assert _b[\'labels\'].tolist() == [[-100, 6, 7], [8, -100, -100]], f"labels: each example\'s own labels, then -100 on padding; got '
                                               '{_b[\'labels\'].tolist()}"\n'
                                               ">>> _ = _check_own_work('05_qlora_finetune', 'pad_batch', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
