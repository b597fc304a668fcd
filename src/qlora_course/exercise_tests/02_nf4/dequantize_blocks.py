OK_FORMAT = True

test = {   'name': 'dequantize_blocks',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _code4 = torch.tensor([-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])\n'
                                               '>>> _packed = torch.tensor([6, 33, 96, 52], dtype=torch.uint8)\n'
                                               '>>> _out = dequantize_blocks(_packed, torch.tensor([2.0, 4.0]), _code4, 4)\n'
                                               ">>> _ = _checks.expect_tensor(_out, 'dequantize_blocks(4 bytes, 2 blocks of 4)', shape=(8,), dtype=torch.float32)\n"
                                               ">>> assert _out[:4].tolist() == [-2.0, 2.0, 0.0, -1.0], f'first block (absmax 2): expected [-2, 2, 0, -1], got {_out[:4].tolist()}: the HIGH nibble "
                                               "comes first'\n"
                                               ">>> assert _out[4:].tolist() == [4.0, -4.0, 1.0, 2.0], f'second block (absmax 4): expected [4, -4, 1, 2], got {_out[4:].tolist()}: each block uses its "
                                               "own absmax'\n"
                                               ">>> _ = _check_own_work('02_nf4', 'dequantize_blocks', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
