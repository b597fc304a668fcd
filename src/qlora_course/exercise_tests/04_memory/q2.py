OK_FORMAT = True

test = {   'name': 'q2',
    'points': 1,
    'suites': [   {   'cases': [{'code': ">>> assert checkpointed_layer_inputs(course_cfg, 1, 1, 4) == 8 * 256 * 4, '8 layers x 256 values x 4 bytes'\n", 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
