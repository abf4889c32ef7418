"""Data sets that tests iterate: each entry states the input and the outcome it must have."""
