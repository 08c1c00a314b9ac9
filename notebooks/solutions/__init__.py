"""Solutions to the exercises at the end of each notebook: `exNN_name.py` answers notebook NN.

Each solution is a small function; `tests/test_solutions.py` runs them and checks their values
against the package, so they stay correct as the package changes. Try the exercise first.
"""
