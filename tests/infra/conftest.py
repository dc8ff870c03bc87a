"""Infra tests: the CDK app synthesized once per session (in process), with a tiny placeholder model artifact so no
trained model is needed. Fixtures only: the helpers are in tests/infra/synthkit.py."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from synthkit import ROOT, Synth, synthesize, write_placeholder_artifact


@pytest.fixture(scope="session")
def placeholder_artifact(tmp_path_factory) -> Path:
    return write_placeholder_artifact(tmp_path_factory.mktemp("artifacts") / "model.tar.gz")


@pytest.fixture(scope="session")
def synth(tmp_path_factory, placeholder_artifact) -> Synth:
    """The app as `make synth` builds it (cdk.json context, cdk-nag checks on), synthesized once."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"), placeholder_artifact)


@pytest.fixture(scope="session")
def cdk_json() -> dict:
    return json.loads((ROOT / "cdk.json").read_text())
