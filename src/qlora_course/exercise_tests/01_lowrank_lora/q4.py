OK_FORMAT = True

test = {   'name': 'q4',
    'points': 1,
    'suites': [   {   'cases': [{'code': ">>> assert lora_trainable(4096, 4096, 8) == 65536, 'a 4096 x 4096 layer at r = 8 trains 65,536 parameters'\n", 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
