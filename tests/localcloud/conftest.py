"""Fixtures for the local cloud's tests (helpers live in cloudkit.py)."""
import pytest

from cloudkit import FakeCdkOut


@pytest.fixture
def fake_cdk_out(tmp_path):
    return FakeCdkOut(tmp_path / "cdk.out")
