"""Shared test setup: hypothesis profiles. (The repo root and functions/ are importable through pytest's
``pythonpath`` setting in pyproject.toml.)"""
import os

from hypothesis import settings

# Property tests: "ci" (the default, `make test` and CI) is derandomized, so a run is reproducible and fast;
# HYPOTHESIS_PROFILE=dev searches longer with fresh random examples (and remembers failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, max_examples=60, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
