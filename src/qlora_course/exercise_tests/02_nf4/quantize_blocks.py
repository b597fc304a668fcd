OK_FORMAT = True

test = {   'name': 'quantize_blocks',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _x = torch.tensor([0.5, -1.0, 0.0, 0.25, 2.0, 2.0, -2.0, 1.0])\n'
                                               ">>> _idx, _absmax = _checks.expect_pair(quantize_blocks(_x, nf4.nf4_code(), 4), 'quantize_blocks(...)')\n"
                                               ">>> _ = _checks.expect_tensor(_idx, 'idx (one nearest-code index per element)', shape=(8,), dtype=torch.int64)\n"
                                               ">>> _ = _checks.expect_tensor(_absmax, 'absmax (one per block)', shape=(2,), dtype=torch.float32)\n"
                                               ">>> assert torch.equal(_absmax, torch.tensor([1.0, 2.0])), 'absmax is the largest |x| of each block'\n"
                                               '>>> assert _idx[1] == 0 and _idx[4] == 15 and (_idx[6] == 0), "the block\'s absmax maps to the end of the code (-1 or 1)"\n'
                                               ">>> assert _idx[2] == 7, '0 maps to the exact zero of NF4 (index 7)'\n"
                                               '>>> assert _idx[7] == 12, "1.0 in the second block (absmax 2) is scaled to 0.5, whose nearest NF4 value is 0.4407 (index 12): divide each value by its '
                                               'block\'s absmax"\n'
                                               '>>> _idx, _absmax = quantize_blocks(torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.5, 0.0]), nf4.nf4_code(), 4)\n'
                                               '>>> assert _absmax.tolist() == [0.0, 1.0] and _idx[:4].tolist() == [7, 7, 7, 7], f"an all-zero block has absmax 0 and its values the code\'s zero '
                                               '(index 7); got absmax {_absmax.tolist()}, indices {_idx[:4].tolist()}"\n'
                                               '>>> _idx, _ = quantize_blocks(torch.tensor([1.0, 0.26, 0.33, -0.5]), nf4.nf4_code(), 4)\n'
                                               ">>> assert _idx[1:3].tolist() == [10, 11], f'0.26 and 0.33 should map to indices 10 and 11, got {_idx[1:3].tolist()}: round to the NEAREST code value, "
                                               "not up or down'\n"
                                               ">>> _ = _check_own_work('02_nf4', 'quantize_blocks', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
