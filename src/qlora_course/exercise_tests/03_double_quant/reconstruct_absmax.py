OK_FORMAT = True

test = {   'name': 'reconstruct_absmax',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _code8 = torch.linspace(-1, 1, 256)\n'
                                               '>>> _q = torch.tensor([0, 255, 128, 127, 255], dtype=torch.uint8)\n'
                                               '>>> _out = reconstruct_absmax(_q, _code8, torch.tensor([0.5, 2.0]), 3.0, blocksize=4)\n'
                                               ">>> _ = _checks.expect_tensor(_out, 'reconstruct_absmax(5 codes, blocks of 4)', shape=(5,), dtype=torch.float32)\n"
                                               '>>> _want = [2.5, 3.5, 3.0 + 0.5 * _code8[128].item(), 3.0 + 0.5 * _code8[127].item(), 5.0]\n'
                                               '>>> assert torch.allclose(_out, torch.tensor(_want)), f"expected {[round(v, 4) for v in _want]}, got {[round(v, 4) for v in _out.tolist()]}: code '
                                               'value x the block\'s absmax2 + offset (the fifth code is in a second, shorter block)"\n'
                                               '>>> _out = reconstruct_absmax(_q[:4], _code8, torch.tensor([0.5]), torch.tensor(3.0), blocksize=4)\n'
                                               ">>> _ = _checks.expect_tensor(_out, 'reconstruct_absmax with a tensor offset', shape=(4,), dtype=torch.float32)\n"
                                               ">>> _ = _check_own_work('03_double_quant', 'reconstruct_absmax', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
