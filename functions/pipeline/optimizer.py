"""Self-tuning batch size: learn cost per event and latency from the cost records, pick the cheapest batch size
that keeps the latency SLO, and apply it (event source mapping BatchSize + invocation chunk size).

Needs scikit-learn and numpy (the retrain function runs from the ML container image).
"""
from __future__ import annotations

import io
import pickle
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
from boto3.dynamodb.conditions import Key

from . import aws, store
from .settings import Settings

MIN_RECORDS = 30
MIN_DISTINCT_SIZES = 3
MAX_STEP_FACTOR = 2.0  # a retrain moves the batch size by at most x2 or /2
HISTORY_DAYS = 7
FEATURES = ("batch_size", "bytes_per_event", "hour", "stream_seconds_per_event")


@dataclass
class Decision:
    batch_size: int
    invoke_chunk_size: int
    reason: str
    records: int
    r2_cost: float | None = None
    r2_latency: float | None = None
    predicted_cost_per_event: float | None = None
    predicted_latency: float | None = None


def load_cost_records(settings: Settings, days: int = HISTORY_DAYS, limit: int = 20_000) -> list[dict]:
    records: list[dict] = []
    today = datetime.now(tz=timezone.utc)
    for back in range(days):
        day = (today - timedelta(days=back)).strftime("%Y-%m-%d")
        records += store.query(settings.cost_table, limit=limit - len(records),
                               KeyConditionExpression=Key("day").eq(day))
        if len(records) >= limit:
            break
    return records


def feature_matrix(records: list[dict]) -> np.ndarray:
    rows = []
    for r in records:
        events = max(r["events"], 1)
        hour = datetime.fromtimestamp(r["recorded_at"], tz=timezone.utc).hour
        rows.append([r["batch_size"], r["bytes"] / events, hour,
                     r["stage_seconds"].get("process_stream", 0.0) / events])
    return np.asarray(rows, dtype=float)


def choose(records: list[dict], settings: Settings, current: int) -> tuple[Decision, object | None]:
    """Pure decision logic (no AWS calls): returns the decision and the fitted models (or None)."""
    sizes = {r["batch_size"] for r in records}
    if len(records) < MIN_RECORDS or len(sizes) < MIN_DISTINCT_SIZES:
        return Decision(current, min(current, settings.invoke_chunk_size),
                        f"too little data: {len(records)} records over {len(sizes)} batch sizes "
                        f"(need {MIN_RECORDS} over {MIN_DISTINCT_SIZES}); keeping {current}", len(records)), None
    from sklearn.ensemble import RandomForestRegressor

    x = feature_matrix(records)
    cost = np.asarray([r["cost_per_event_usd"] for r in records])
    latency = np.asarray([r["latency_max"] for r in records])
    cost_model = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, oob_score=True, random_state=0,
                                       n_jobs=1).fit(x, cost)
    latency_model = RandomForestRegressor(n_estimators=100, min_samples_leaf=3, oob_score=True, random_state=0,
                                          n_jobs=1).fit(x, latency)
    low = max(settings.min_batch_size, int(current / MAX_STEP_FACTOR))
    high = min(settings.max_batch_size, int(current * MAX_STEP_FACTOR))
    candidates = np.arange(low, high + 1, dtype=float)
    workload = np.median(x[-200:], axis=0)  # recent conditions
    grid = np.tile(workload, (len(candidates), 1))
    grid[:, 0] = candidates
    predicted_cost = cost_model.predict(grid)  # vectorised: one call for every candidate
    predicted_latency = latency_model.predict(grid)
    ok = predicted_latency <= settings.latency_slo_seconds
    if not ok.any():
        best = int(np.argmin(predicted_latency))
        reason = f"no candidate meets the {settings.latency_slo_seconds}s SLO; chose the lowest predicted latency"
    else:
        best = int(np.flatnonzero(ok)[np.argmin(predicted_cost[ok])])
        reason = (f"cheapest predicted cost per event within the {settings.latency_slo_seconds}s SLO "
                  f"among {low}..{high}")
    size = int(candidates[best])
    decision = Decision(size, min(size, settings.invoke_chunk_size), reason, len(records),
                        r2_cost=float(cost_model.oob_score_), r2_latency=float(latency_model.oob_score_),
                        predicted_cost_per_event=float(predicted_cost[best]),
                        predicted_latency=float(predicted_latency[best]))
    return decision, {"cost": cost_model, "latency": latency_model, "features": FEATURES}


def retrain_and_apply(settings: Settings) -> dict:
    config = store.get_item(settings.state_table, {"pk": "config"}) or {}
    current = int(config.get("batch_size") or settings.batch_size)
    records = load_cost_records(settings)
    decision, models = choose(records, settings, current)
    now = time.time()
    model_key = None
    if models is not None:
        model_key = f"optimizer/{int(now)}.pkl"
        buffer = io.BytesIO()
        pickle.dump({"models": models, "decision": asdict(decision)}, buffer)
        aws.client("s3").put_object(Bucket=settings.artifacts_bucket, Key=model_key, Body=buffer.getvalue())
    if settings.event_source_mapping_id and decision.batch_size != current:
        aws.client("lambda").update_event_source_mapping(UUID=settings.event_source_mapping_id,
                                                         BatchSize=decision.batch_size)
    optimizer = asdict(decision) | {"trained_at": now, "model_s3_key": model_key, "previous_batch_size": current}
    store.put_item(settings.state_table, {
        "pk": "config", "batch_size": decision.batch_size, "invoke_chunk_size": decision.invoke_chunk_size,
        "batching_window_seconds": int(config.get("batching_window_seconds") or settings.batching_window_seconds),
        "optimizer": optimizer, "updated_at": now})
    return optimizer
