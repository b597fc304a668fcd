OK_FORMAT = True

test = {   'name': 'four_bit_shards',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> from qlora_course.exercises import check_own_work as _check_own_work\n'
                                               '>>> from qlora_course.exercises import quiet as _quiet\n'
                                               '>>> _ = _quiet()\n'
                                               '>>> _got = four_bit_shards(256, 256, torch.uint8, 2)\n'
                                               ">>> assert isinstance(_got, list) and len(_got) == 2, f'one number a rank: expected a list of 2, got {_got!r}'\n"
                                               ">>> assert sum(_got) == 256 * 256 // 2, f'uint8 holds 2 codes an element: 32768 rows in all, got {sum(_got)}'\n"
                                               ">>> assert four_bit_shards(256, 256, torch.float32, 2) == [4096, 4096], 'float32 holds 8 codes an element'\n"
                                               ">>> assert four_bit_shards(4, 5, torch.float16, 4) == [2, 2, 1, 0], '5 rows on 4 ranks: torch.chunk gives 2, 2, 1, 0'\n"
                                               ">>> _ = _check_own_work('07_fsdp_qlora', 'four_bit_shards', globals())\n",
                                       'hidden': False,
                                       'locked': False,
                                       'points': 0}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
