"""Shared test setup: hypothesis profiles. (The repo root and functions/ are importable through pytest's
``pythonpath`` setting in pyproject.toml.)"""
import os

from hypothesis import settings

# Property tests: "ci" (the default, `make test` and CI) is derandomized, so a run is reproducible and fast;
# HYPOTHESIS_PROFILE=dev searches longer with fresh random examples (and remembers failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, max_examples=60, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items):
    # `make test` runs on two pytest-xdist workers. The end-to-end tests share one session-scoped local cloud,
    # and moto's state is per process: a unit test's mock_aws would reset it under them, so they run as one
    # group on one worker, before or after (never between) the other worker-sharing files.
    import pytest

    for item in items:
        if "e2e" in item.path.relative_to(item.config.rootpath).parts[:2]:
            item.add_marker(pytest.mark.xdist_group("e2e"))
