"""Shared test setup: the Lambda code (functions/) and the repo root are importable; hypothesis profiles."""
import os
import sys
from pathlib import Path

from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "functions"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# Property tests: "ci" (the default, `make test` and CI) is derandomized, so a run is reproducible and fast;
# HYPOTHESIS_PROFILE=dev searches longer with fresh random examples (and remembers failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, max_examples=60, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
