"""Tools for learning how the model works, not needed to run it: `visualize` (pictures), `attention_maps`,
`compare` (module by module against transformers), `fake_inputs` (the test guide's), `shapes` (a toy world of
coloured shapes to train on) and `shapes_eval` (grading a model on it).
"""
