"""Every requirement of the ML image resolves to a binary wheel for the image's platform and Python, checked against
the package index without Docker (the class of failure that broke the python3.11 image: pip falling back to source
builds without a compiler inside `cdk deploy`'s image build).

The image is public.ecr.aws/lambda/python:3.12 (infra/runtime.py): Amazon Linux 2023, glibc 2.34 (AWS Lambda
Developer Guide, "Lambda runtimes", https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html: python3.12 is
an Amazon Linux 2023 runtime; python3.11 is Amazon Linux 2, glibc 2.26). Under PEP 600 a glibc 2.34 system installs
manylinux_2_Y wheels for every Y <= 34, so the check passes all of them to pip: pip does not expand a perennial
manylinux tag to older ones by itself (`--platform manylinux_2_34_x86_64` alone rejects numpy's manylinux_2_27/2_28
wheels; pip/_internal/utils/compatibility_tags.py expands only manylinux2014/2010).

    pip install --dry-run --ignore-installed --only-binary=:all: --platform manylinux_2_{34..5}_x86_64
        --platform manylinux2014_x86_64 ... --python-version 3.12 --target <tmp> -r functions/requirements-ml.txt
        --report <file>

No installation happens. Measured here (2 cores): ~9 s with pip's HTTP cache warm. pip reads wheel metadata from
the index (PEP 658) where the index serves it; the index this machine reaches does not, so the first run downloads
the wheels once into pip's cache (~530 MB, 351 MB of it nvidia-nccl-cu12, a dependency of the manylinux_2_28
xgboost wheel).

It needs the package index (CI reaches PyPI): it is not skipped when the index is unreachable, it fails saying so.

Evidence, the old combination (python3.11 base = Amazon Linux 2, i.e. manylinux2014 and older, glibc 2.17): pip
finds no wheel of numpy 2.4.6 at all ("from versions: ... 2.2.6" and "No matching distribution found for
numpy==2.4.6"); ``test_the_old_python311_manylinux2014_image_had_no_wheels`` keeps that on record.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import runtime

pytestmark = pytest.mark.network      # selected by default (`make test` runs it): `-m "not network"` leaves it out

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "functions" / "requirements-ml.txt"
GLIBC_MINOR = 34                       # Amazon Linux 2023
UNREACHABLE = ("NewConnectionError", "ConnectTimeout", "Max retries exceeded", "Could not fetch URL",
               "Temporary failure in name resolution", "Name or service not known", "ProxyError", "SSLError",
               "ConnectionError", "Network is unreachable", "timed out")


def platforms(glibc_minor: int = GLIBC_MINOR, arch: str = "x86_64") -> list[str]:
    """The manylinux tags a glibc 2.<glibc_minor> system accepts, newest first (PEP 600, plus the legacy aliases)."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, 4, -1)]
    return tags + [f"manylinux{alias}_{arch}" for alias, minor in (("2014", 17), ("2010", 12), ("1", 5))
                   if minor <= glibc_minor]


def dry_run(tmp_path: Path, python_version: str, platform_tags: list[str]) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / f"report-{python_version}.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
               *[a for tag in platform_tags for a in ("--platform", tag)], "--python-version", python_version,
               "--target", str(tmp_path / "target"), "-r", str(REQUIREMENTS), "--report", str(report),
               "--timeout", "30", "--retries", "2", "--disable-pip-version-check", "--no-input"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    return result, (json.loads(report.read_text()) if report.exists() else {})


def fail_if_index_unreachable(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(marker in output for marker in UNREACHABLE):
        pytest.fail("the package index is unreachable, so the ML image's wheels cannot be checked. This test needs "
                    "PyPI (CI reaches it) and is deliberately not skipped; pip said:\n" + output[-3000:],
                    pytrace=False)


def test_every_ml_requirement_has_a_binary_wheel_for_the_image(tmp_path):
    assert runtime.ML_WHEEL_PLATFORM == platforms()[0]
    started = time.monotonic()
    result, report = dry_run(tmp_path, runtime.PYTHON_VERSION, platforms())
    seconds = time.monotonic() - started
    fail_if_index_unreachable(result)
    assert result.returncode == 0, (
        f"some requirement of {REQUIREMENTS.relative_to(ROOT)} has no binary wheel for {runtime.ML_IMAGE_BASE} "
        f"(CPython {runtime.PYTHON_VERSION}, glibc 2.{GLIBC_MINOR}): the image build would try a source build. "
        f"pip said:\n{result.stderr[-3000:]}")
    installs = {item["metadata"]["name"].lower().replace("_", "-"): item for item in report["install"]}
    not_wheels = [name for name, item in installs.items() if not item["download_info"]["url"].endswith(".whl")]
    assert not not_wheels
    # every pin of the file is what resolves (the image gets the tested versions, not whatever is newest)
    pins = {line.split("==")[0].split("[")[0].strip().lower(): line.split("==")[1].split()[0]
            for line in REQUIREMENTS.read_text().splitlines() if "==" in line and not line.startswith("#")}
    assert {name: installs[name]["metadata"]["version"] for name in pins} == pins
    # the reason the python3.11 image failed: xgboost 3.x is manylinux_2_28 only
    assert "manylinux_2_28_x86_64" in installs["xgboost"]["download_info"]["url"]
    assert seconds < 600, f"pip took {seconds:.0f} s"


def test_the_old_python311_manylinux2014_image_had_no_wheels(tmp_path):
    """Evidence for the runtime change: Amazon Linux 2 (python3.11 image) only takes manylinux2014 and older."""
    result, _ = dry_run(tmp_path, "3.11", ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])
    fail_if_index_unreachable(result)
    assert result.returncode != 0
    assert "No matching distribution found for numpy==2.4.6" in result.stderr


def test_platform_tags_follow_pep600():
    assert platforms()[:3] == ["manylinux_2_34_x86_64", "manylinux_2_33_x86_64", "manylinux_2_32_x86_64"]
    assert {"manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(
        platforms())
    assert "manylinux_2_28_x86_64" not in platforms(26)     # Amazon Linux 2
