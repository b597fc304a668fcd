OK_FORMAT = True

test = {   'name': 'qlora_forward',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _g = torch.Generator().manual_seed(6)\n'
                                               '>>> for _rows, _cols in ((80, 256), (30, 70)):\n'
                                               '...     _W = torch.randn(_rows, _cols, generator=_g) * (0.01 + 0.1 * torch.rand(_rows, 1, generator=_g))\n'
                                               "...     _packed, _state = bnbF.quantize_4bit(_W, blocksize=64, quant_type='nf4', compress_statistics=True)\n"
                                               '...     _A, _B = (0.2 * torch.randn(4, _cols, generator=_g), 0.2 * torch.randn(_rows, 4, generator=_g))\n'
                                               '...     _x = torch.randn(2, 3, _cols, generator=_g)\n'
                                               "...     _y = _checks.expect_tensor(qlora_forward(_x, _packed, _state, _A, _B, 1.5), f'qlora_forward on a {_rows} x {_cols} weight', shape=(2, 3, "
                                               '_rows), dtype=torch.float32)\n'
                                               '...     _base = _x @ bnbF.dequantize_4bit(_packed, _state).T\n'
                                               '...     _want = _base + 1.5 * (_x @ _A.T) @ _B.T\n'
                                               '...     _err = (_y - _want).abs().max().item()\n'
                                               "...     _hint = 'the frozen part is right; check the adapter and its scaling' if (_y - _want + _base).abs().max() < 0.5 * _err or torch.allclose(_y - "
                                               '_base, (_want - _base) / 1.5, atol=0.0001) else "the dequantized weight differs from bitsandbytes\': check the constants, the nibbles and the blocks"\n'
                                               '...     assert _err <= 1e-05 * _want.abs().max().item(), f"{_rows} x {_cols} weight: largest difference {_err:.2e} from bitsandbytes\' weight + the '
                                               'scaled adapter; {_hint}"\n'
                                               ">>> _ = _check_own_work('03_double_quant', 'qlora_forward', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
