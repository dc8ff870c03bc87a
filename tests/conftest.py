"""Shared test setup: hypothesis profiles. (The repo root and functions/ are importable through pytest's
``pythonpath`` setting in pyproject.toml.)"""
import os

import pytest
from hypothesis import settings

# Property tests: "ci" (the default, `make test` and CI) is derandomized, so a run is reproducible and fast;
# HYPOTHESIS_PROFILE=dev searches longer with fresh random examples (and remembers failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, max_examples=60, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist's own hook, which reads the groups off the markers
def pytest_collection_modifyitems(items):
    # `make test` runs on two pytest-xdist workers (--dist loadgroup: a group's tests all go to one worker).
    # - The end-to-end tests that use the session-scoped local cloud (tests/e2e/conftest.py `cloud`) share it, and
    #   moto's state is per process: a unit test's mock_aws would reset it under them, so they form one group.
    # - Every other file is a group of its own, as with --dist loadfile: a module-scoped fixture (the A/B modes'
    #   and the fault matrix's own deployed clouds, a synthesized template) is then built once, not once per
    #   worker that draws one of its tests, and no other file's mock_aws runs between the tests that use it.
    for item in items:
        in_e2e = item.path.relative_to(item.config.rootpath).parts[:2] == ("tests", "e2e")   # not the clone's path
        session_cloud = in_e2e and "cloud" in getattr(item, "fixturenames", ())
        group = "e2e-session-cloud" if session_cloud else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
