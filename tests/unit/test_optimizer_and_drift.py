import numpy as np

from pipeline import drift
from pipeline.features import FEATURE_NAMES


def test_psi_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(5000, len(FEATURE_NAMES)))
    baseline = drift.baseline_from_features(train)
    same = drift.compare(baseline, rng.normal(size=(2000, len(FEATURE_NAMES))))
    shifted = drift.compare(baseline, rng.normal(loc=1.0, size=(2000, len(FEATURE_NAMES))))
    assert max(v["psi"] for v in same.values()) < 0.05
    assert min(v["psi"] for v in shifted.values()) > 0.2
    assert min(v["ks"] for v in shifted.values()) > 0.2 > max(v["ks"] for v in same.values())
