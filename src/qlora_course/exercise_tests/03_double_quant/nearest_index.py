OK_FORMAT = True

test = {   'name': 'nearest_index',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> from qlora_course import checks as _checks\n'
                                               '>>> _dmap = dq.dynamic_map(signed=True)\n'
                                               '>>> _uniform = torch.linspace(-1, 1, 256)\n'
                                               '>>> _i = nearest_index(torch.tensor([-1.0, 0.0, 1.0, 0.5]), _dmap)\n'
                                               ">>> _ = _checks.expect_tensor(_i, 'nearest_index of 4 values', shape=(4,), dtype=torch.int64)\n"
                                               ">>> assert _dmap[_i[2]] == 1 and _dmap[_i[1]] == 0, '0 and 1 are in the map exactly: they must map to themselves'\n"
                                               ">>> assert _i[0] == 0, '-1 is below every value of the map: its nearest is the smallest, index 0'\n"
                                               '>>> _lo, _hi = (_dmap[200].item(), _dmap[201].item())\n'
                                               '>>> _i = nearest_index(torch.tensor([_lo + 0.3 * (_hi - _lo), _lo + 0.7 * (_hi - _lo)]), _dmap)\n'
                                               ">>> assert _i.tolist() == [200, 201], f'values 30% and 70% of the way from _dmap[200] to _dmap[201] should map to [200, 201], got {_i.tolist()}: round "
                                               "to the NEAREST value, not up or down'\n"
                                               ">>> _ = _check_own_work('03_double_quant', 'nearest_index', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
