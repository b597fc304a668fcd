OK_FORMAT = True

test = {   'name': 'q1',
    'points': 1,
    'suites': [   {   'cases': [   {   'code': ">>> assert isinstance(entropy_in_bits(torch.tensor([5, 5])), float), 'return a Python float (use float(...))'\n"
                                               ">>> assert abs(entropy_in_bits(torch.tensor([3, 3, 3, 3])) - 2.0) < 1e-09, '4 equally likely values carry 2 bits'\n"
                                               ">>> assert abs(entropy_in_bits(torch.tensor([7, 0, 0, 7])) - 1.0) < 1e-09, 'zero counts must be skipped, not give NaN'\n",
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
