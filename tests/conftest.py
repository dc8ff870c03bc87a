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
    # `make test` runs on two pytest-xdist workers. The end-to-end tests that use the session-scoped local cloud
    # (tests/e2e/conftest.py `cloud`) share it, and moto's state is per process: a unit test's mock_aws would reset
    # it under them, so they run as one group on one worker, before or after (never between) the other files.
    # Files that deploy their own module-scoped clouds (A/B modes, the fault matrix) run whole too (loadgroup keeps a
    # file together) and may go to either worker.
    import pytest

    for item in items:
        if "cloud" in getattr(item, "fixturenames", ()) and "e2e" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group("e2e-session-cloud"))
