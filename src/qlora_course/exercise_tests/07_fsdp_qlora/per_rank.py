OK_FORMAT = True

test = {   'name': 'per_rank',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               ">>> _parts = {'weights': 8000000000.0, 'quant_constants': 400000000.0, 'lora_weights': 200000000.0, 'gradients': 200000000.0, 'optimizer_state': "
                                               "400000000.0, 'activations': 1000000000.0}\n"
                                               '>>> _got = per_rank(dict(_parts), 4)\n'
                                               '>>> assert isinstance(_got, dict) and \'total\' in _got, f"return a dict with a \'total\', got {_got!r}"\n'
                                               '>>> assert _got[\'weights\'] == 2000000000.0, f"the weights are sharded: 8e9 / 4 = 2e9, got {_got[\'weights\']}"\n'
                                               ">>> assert _got['quant_constants'] == 400000000.0, 'the quantization constants are not parameters: FSDP never divides them'\n"
                                               ">>> assert _got['activations'] == 1000000000.0, 'each rank runs its own batch: the activations are not divided'\n"
                                               '>>> assert abs(_got[\'total\'] - sum((v for k, v in _got.items() if k != \'total\'))) < 1, "the total is the rank\'s sum"\n'
                                               ">>> assert per_rank(dict(_parts), 4, sharded=False)['weights'] == 8000000000.0, 'DDP: every rank holds every weight'\n"
                                               ">>> _ = _check_own_work('07_fsdp_qlora', 'per_rank', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
