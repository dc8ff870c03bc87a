"""The optimizer's models: features of a cost record, and the two fitted models (tunable cost per event and
processing latency, each a physical baseline plus a RandomForest on its residuals), with the latency model's
out-of-bag error margin and process_stream's time per batch (what paces a shard)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from .records import processing_seconds, target_cost

FEATURES = ("events", "arrival_rate", "bytes_per_event", "hour", "stream_seconds_per_event",
            "model_seconds_per_event")


def feature_row(r: dict) -> list[float]:
    events = max(int(r["events"]), 1)
    stages = r.get("stage_seconds", {})
    hour = datetime.fromtimestamp(float(r["recorded_at"]), tz=timezone.utc).hour
    return [events, float(r.get("arrival_rate") or 0.0), float(r["bytes"]) / events, hour,
            float(stages.get("process_stream", 0.0)) / events, float(stages.get("invoke_model", 0.0)) / events]


def feature_matrix(records: list[dict]) -> np.ndarray:
    return np.asarray([feature_row(r) for r in records], dtype=float)


def _forest():
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=60, min_samples_leaf=3, oob_score=True, random_state=0, n_jobs=1)


class Hybrid:
    """A physical baseline fitted by least squares, plus a RandomForest on its residuals. The baseline carries the
    trend beyond the batch sizes seen so far (a forest alone is flat outside its data, so it would never learn
    that a larger batch is cheaper until it had tried one); the forest learns what the baseline misses (workload,
    hour, non-linear effects). Cost per event: c0 / events + c1. Processing latency: l0 + l1 x events. The
    coefficients are fitted non-negative (a per-batch cost, a per-event cost, a fixed time, a time per event)."""

    def __init__(self, basis):
        self.basis = basis
        self.coef = None
        self.forest = _forest()

    def fit(self, x: np.ndarray, y: np.ndarray) -> "Hybrid":
        b = self.basis(x[:, 0])
        from scipy.optimize import nnls  # (scipy comes with scikit-learn)

        scale = max(float(np.abs(y).max()), 1e-300)       # both terms are physical: neither may be negative
        coef, _ = nnls(b, y / scale)
        self.coef = coef * scale
        self.forest.fit(x, y - b @ self.coef)
        oob = b @ self.coef + self.forest.oob_prediction_
        self.oob_prediction_ = oob
        self.oob_score_ = float(1 - np.sum((y - oob) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-300))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.basis(x[:, 0]) @ self.coef + self.forest.predict(x)


def _per_batch_basis(events: np.ndarray) -> np.ndarray:
    return np.column_stack([1 / np.maximum(events, 1), np.ones(len(events))])


def _linear_basis(events: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(events)), events])


@dataclass
class FittedModels:
    """What choose predicts with: the two models on the feature matrix ``x`` of the training records, the latency
    margin (99th percentile of the latency model's out-of-bag error, >= 0) and process_stream seconds per batch
    = ps_fixed + ps_per_event x events (it paces the shard: the next batch waits for it)."""
    x: np.ndarray
    cost: Hybrid
    latency: Hybrid
    margin: float
    ps_fixed: float
    ps_per_event: float


def fit_models(records: list[dict]) -> FittedModels:
    x = feature_matrix(records)
    cost = np.asarray([target_cost(r) for r in records])
    processing = np.asarray([processing_seconds(r) for r in records])
    cost_model = Hybrid(_per_batch_basis).fit(x, cost)
    latency_model = Hybrid(_linear_basis).fit(x, processing)
    margin = max(0.0, float(np.quantile(processing - latency_model.oob_prediction_, 0.99)))
    slope, intercept = np.polyfit(x[:, 0], x[:, 0] * x[:, 4], 1)
    return FittedModels(x, cost_model, latency_model, margin, max(float(intercept), 0.0), max(float(slope), 0.0))
