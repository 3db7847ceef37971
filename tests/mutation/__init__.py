"""Mutation testing: the runner (run.py) and its targets."""
