"""Shared test setup: the Lambda code (functions/) and the repo root are importable."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "functions"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# Hypothesis: "ci" (the default) draws the same examples every run, so a test passes or fails the same way each
# time (and a mutation run's verdict does not depend on luck); "deep" (HYPOTHESIS_PROFILE=deep) searches more.
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
hypothesis_settings.register_profile("deep", max_examples=1000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
