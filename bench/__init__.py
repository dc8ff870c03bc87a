"""Benchmarks: `make bench` runs them all (python -m bench); each module also runs alone."""
