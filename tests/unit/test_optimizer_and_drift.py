import random

import numpy as np

from pipeline import drift, optimizer
from pipeline.features import FEATURE_NAMES
from pipeline.settings import settings


def _records(sizes, optimum=240, seed=1):
    rng = random.Random(seed)
    records = []
    for i in range(400):
        size = rng.choice(sizes)
        cost = 1e-6 * (1 + ((size - optimum) / 200) ** 2) * rng.uniform(0.97, 1.03)  # a bowl with its floor at 240
        records.append({"batch_size": size, "events": size, "bytes": 200 * size, "recorded_at": 1_795_000_000 + i,
                        "stage_seconds": {"process_stream": 0.001 * size}, "cost_per_event_usd": cost,
                        "latency_max": 0.2 + size / 1000})
    return records


def test_optimizer_finds_the_known_optimum_within_its_step(monkeypatch):
    monkeypatch.setenv("MAX_BATCH_SIZE", "500")
    decision, models = optimizer.choose(_records(list(range(10, 501, 10))), settings(), current=200)
    assert models is not None and decision.r2_cost > 0.8
    assert 220 <= decision.batch_size <= 260, decision


def test_optimizer_respects_the_latency_slo(monkeypatch):
    monkeypatch.setenv("LATENCY_SLO_SECONDS", "0.35")  # latency 0.2 + size/1000 -> size <= 150
    decision, _ = optimizer.choose(_records(list(range(10, 501, 10))), settings(), current=200)
    assert decision.batch_size <= 155


def test_optimizer_falls_back_with_too_little_data():
    decision, models = optimizer.choose(_records([100])[:10], settings(), current=100)
    assert models is None and decision.batch_size == 100 and "too little data" in decision.reason


def test_psi_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(5000, len(FEATURE_NAMES)))
    baseline = drift.baseline_from_features(train)
    same = drift.compare(baseline, rng.normal(size=(2000, len(FEATURE_NAMES))))
    shifted = drift.compare(baseline, rng.normal(loc=1.0, size=(2000, len(FEATURE_NAMES))))
    assert max(v["psi"] for v in same.values()) < 0.05
    assert min(v["psi"] for v in shifted.values()) > 0.2
    assert min(v["ks"] for v in shifted.values()) > 0.2 > max(v["ks"] for v in same.values())
