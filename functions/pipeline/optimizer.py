"""Self-tuning batch size: learn cost per event and latency from the cost records, pick the cheapest batch size
(and batching window) that keeps the latency SLO, and apply it (event source mapping BatchSize and
MaximumBatchingWindowInSeconds, and the invocation chunk size in the STATE_TABLE "config" item).

Model: two scikit-learn RandomForests on the cost records, features = FEATURES (the batch's events, i.e. the
batch size it turned out to have, and the workload: per-shard arrival rate, bytes per event, hour of day, recent
process_stream and invoke_model seconds per event). Targets: the tunable cost per event (the cost lines a batch
setting can change, see costs.py; shard-hours and other attributed lines do not depend on it) and the batch's
latency (oldest event: ingest -> prediction stored).

Choice: for each candidate BatchSize B within the step bound, the batch it would produce under the current
workload is e = min(B, arrival rate x max(window, process_stream time)) (the mapping closes a batch when it is
full or when the window passes, and records queue while process_stream runs); predict cost and latency at e,
keep candidates whose predicted latency plus the 99th percentile of the latency model's out-of-bag error is
within the SLO, take the cheapest. The window is the shortest that lets the chosen batch fill at the current
rate, at most the configured window (and the SLO): the records only show latencies under windows up to it.

Guard rails: a retrain moves BatchSize by at most MAX_STEP_FACTOR; too little data -> the configured default;
after a change, the next retrain compares the measured cost per event under the new setting with the setting
before (at least MIN_COMPARE batches each); if the new one is more than ROLLBACK_TOLERANCE dearer it rolls back,
records why, and keeps that size out of the candidates for REJECT_SECONDS.

Needs scikit-learn and numpy (the retrain function runs from the ML container image).
"""
from __future__ import annotations

import io
import json
import math
import pickle
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
from boto3.dynamodb.conditions import Key

from . import aws, store
from .settings import Settings

MIN_RECORDS = 30
MIN_DISTINCT_SIZES = 3
MAX_STEP_FACTOR = 2.0          # a retrain moves the batch size by at most x2 or /2
HISTORY_DAYS = 7
MAX_TRAIN_RECORDS = 5000       # newest records used for training
RECENT_RECORDS = 100           # the workload now = medians over the newest records
MIN_COMPARE = 20               # batches needed on each side before judging a change
ROLLBACK_TOLERANCE = 0.05      # roll back when the new setting's measured cost is > 5 % above the old one
REJECT_SECONDS = 24 * 3600     # a rolled-back size stays out of the candidates this long
REJECT_BAND = 0.10             # ... and so do sizes within +-10 % of it
MAX_WINDOW_SECONDS = 300       # Kinesis MaximumBatchingWindowInSeconds limit
FEATURES = ("events", "arrival_rate", "bytes_per_event", "hour", "stream_seconds_per_event",
            "model_seconds_per_event")


@dataclass
class Decision:
    batch_size: int
    batching_window_seconds: int
    invoke_chunk_size: int
    reason: str
    records: int
    status: str = "trained"              # trained | fallback | rollback | waiting
    r2_cost: float | None = None
    r2_latency: float | None = None
    latency_margin_seconds: float | None = None
    predicted_cost_per_event: float | None = None
    predicted_latency: float | None = None
    workload: dict = field(default_factory=dict)
    candidates: dict = field(default_factory=dict)   # a few predicted points of the cost curve, for the status


def load_cost_records(settings: Settings, days: int = HISTORY_DAYS, limit: int = 20_000) -> list[dict]:
    records: list[dict] = []
    today = datetime.now(tz=timezone.utc)
    for back in range(days):
        day = (today - timedelta(days=back)).strftime("%Y-%m-%d")
        records += store.query(settings.cost_table, limit=limit - len(records), ScanIndexForward=False,
                               KeyConditionExpression=Key("day").eq(day))
        if len(records) >= limit:
            break
    return sorted(records, key=lambda r: r["recorded_at"])


def _target_cost(r: dict) -> float:
    return float(r.get("tunable_cost_per_event_usd", r["cost_per_event_usd"]))


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


def fallback(settings: Settings, reason: str, records: int) -> Decision:
    size = settings.batch_size
    return Decision(size, settings.batching_window_seconds, min(size, settings.invoke_chunk_size),
                    reason + f"; using the configured default BatchSize {size}", records, status="fallback")


def choose(records: list[dict], settings: Settings, current: int, rejected: dict | None = None,
           now: float | None = None) -> tuple[Decision, dict | None]:
    """Pure decision logic (no AWS calls): the decision and the fitted models (None when it fell back)."""
    now = time.time() if now is None else now
    records = [r for r in records if int(r.get("events", 0)) > 0][-MAX_TRAIN_RECORDS:]
    sizes = {int(r["events"]) for r in records}
    if len(records) < MIN_RECORDS or len(sizes) < MIN_DISTINCT_SIZES:
        return fallback(settings, f"too little data: {len(records)} cost records over {len(sizes)} batch sizes "
                                  f"(need {MIN_RECORDS} over {MIN_DISTINCT_SIZES})", len(records)), None
    x = feature_matrix(records)
    cost = np.asarray([_target_cost(r) for r in records])
    latency = np.asarray([float(r["latency_max"]) for r in records])
    cost_model = _forest().fit(x, cost)
    latency_model = _forest().fit(x, latency)
    residuals = latency - latency_model.oob_prediction_
    margin = max(0.0, float(np.quantile(residuals, 0.99)))

    recent = x[-RECENT_RECORDS:]
    rate = float(np.median(recent[:, 1]))
    workload = np.median(recent, axis=0)
    workload[3] = datetime.fromtimestamp(now, tz=timezone.utc).hour
    stream_per_event = float(workload[4])
    slo = settings.latency_slo_seconds
    # the configured window is the upper bound: a longer one would add its length to every quiet-time batch's
    # latency, which the records (all taken under windows up to it) cannot predict
    max_window = int(min(MAX_WINDOW_SECONDS, settings.batching_window_seconds, max(0, math.floor(slo))))

    low = max(settings.min_batch_size, int(current / MAX_STEP_FACTOR))
    high = min(settings.max_batch_size, int(current * MAX_STEP_FACTOR))
    candidates = np.arange(low, high + 1)
    active_rejections = {int(s): until for s, until in (rejected or {}).items() if float(until) > now}
    for size in active_rejections:
        candidates = candidates[np.abs(candidates - size) > REJECT_BAND * size]
    if len(candidates) == 0:
        candidates = np.asarray([current])
    # the batch each BatchSize would produce now: full, or what arrives within the longest window / while
    # the previous batch is processed
    reachable = rate * np.maximum(max(max_window, 1.0), stream_per_event * candidates) if rate > 0 else candidates
    effective = np.maximum(1, np.minimum(candidates, np.floor(reachable)))
    grid = np.tile(workload, (len(candidates), 1))
    grid[:, 0] = effective
    predicted_cost = cost_model.predict(grid)          # vectorised: one call for every candidate
    predicted_latency = latency_model.predict(grid)
    ok = predicted_latency + margin <= slo
    if ok.any():
        best = int(np.flatnonzero(ok)[np.argmin(predicted_cost[ok])])
        # among equally cheap candidates (the forest is flat beyond the data) prefer the one closest to current
        near = np.flatnonzero(ok & (predicted_cost <= predicted_cost[best] * (1 + 1e-9)))
        best = int(near[np.argmin(np.abs(candidates[near] - current))])
        reason = (f"cheapest predicted tunable cost per event among BatchSize {low}..{high} whose predicted "
                  f"latency + {margin:.3f}s (p99 out-of-bag error) is within the {slo:g}s SLO, at "
                  f"{rate:.1f} events/s per shard")
    else:
        best = int(np.argmin(predicted_latency))
        reason = (f"no BatchSize in {low}..{high} is predicted within the {slo:g}s SLO (+{margin:.3f}s margin) "
                  f"at {rate:.1f} events/s per shard; chose the lowest predicted latency")
    if active_rejections:
        reason += f"; excluded after rollback: {sorted(active_rejections)}"
    size = int(candidates[best])
    window = max_window if rate <= 0 else int(min(max_window, math.ceil(size / rate)))
    step = max(1, len(candidates) // 8)
    curve = {str(int(candidates[i])): {"cost_per_event": float(predicted_cost[i]),
                                       "latency": float(predicted_latency[i])}
             for i in sorted(set(range(0, len(candidates), step)) | {best})}
    decision = Decision(
        size, window, min(size, settings.invoke_chunk_size), reason, len(records),
        r2_cost=float(cost_model.oob_score_), r2_latency=float(latency_model.oob_score_),
        latency_margin_seconds=margin, predicted_cost_per_event=float(predicted_cost[best]),
        predicted_latency=float(predicted_latency[best]),
        workload=dict(zip(FEATURES[1:], (float(v) for v in workload[1:]))), candidates=curve)
    return decision, {"cost": cost_model, "latency": latency_model, "features": FEATURES}


def measured_cost(records: list[dict]) -> float | None:
    events = sum(int(r["events"]) for r in records)
    if not events:
        return None
    return sum(_target_cost(r) * int(r["events"]) for r in records) / events


def evaluate_change(records: list[dict], last_change: dict) -> dict:
    """Compare the measured cost per event under the new setting with the setting before it.
    Returns {"verdict": "pending"|"kept"|"rollback", ...figures}."""
    applied_at = float(last_change["applied_at"])
    new, old = int(last_change["batch_size"]), int(last_change["previous_batch_size"])
    after = [r for r in records if float(r["recorded_at"]) >= applied_at
             and int(r.get("configured_batch_size", -1)) == new]
    before = [r for r in records if float(r["recorded_at"]) < applied_at
              and int(r.get("configured_batch_size", -1)) == old]
    result = {"batches_before": len(before), "batches_after": len(after), "from": old, "to": new}
    if len(after) < MIN_COMPARE or len(before) < MIN_COMPARE:
        return result | {"verdict": "pending"}
    cost_before, cost_after = measured_cost(before[-len(after) * 4:]), measured_cost(after)
    result |= {"cost_per_event_before": cost_before, "cost_per_event_after": cost_after,
               "change": cost_after / cost_before - 1 if cost_before else None}
    if cost_before and cost_after > cost_before * (1 + ROLLBACK_TOLERANCE):
        return result | {"verdict": "rollback"}
    return result | {"verdict": "kept"}


def decide(records: list[dict], settings: Settings, config: dict, now: float) -> tuple[Decision, dict | None, dict]:
    """Rollback check, then choose. Returns (decision, models, optimizer state to keep in the config item)."""
    state = dict(config.get("optimizer_state") or {})
    rejected = {k: v for k, v in (state.get("rejected") or {}).items() if float(v) > now}
    current = int(config.get("batch_size") or settings.batch_size)
    current_window = int(config.get("batching_window_seconds", settings.batching_window_seconds))
    last_change = state.get("last_change")
    if last_change and not last_change.get("evaluated"):
        verdict = evaluate_change(records, last_change)
        if verdict["verdict"] == "pending":
            decision = Decision(current, current_window, int(config.get("invoke_chunk_size")
                                                             or min(current, settings.invoke_chunk_size)),
                                f"waiting for {MIN_COMPARE} batches under BatchSize {verdict['to']} and under "
                                f"{verdict['from']} before judging the last change (have {verdict['batches_after']}"
                                f" and {verdict['batches_before']})", len(records), status="waiting")
            return decision, None, state | {"rejected": rejected}
        last_change = dict(last_change, evaluated=True, evaluation=verdict)
        state["last_change"] = last_change
        state["last_evaluation"] = {"at": now, **verdict}
        if verdict["verdict"] == "rollback":
            old = int(last_change["previous_batch_size"])
            rejected[str(int(last_change["batch_size"]))] = now + REJECT_SECONDS
            rollback = {"at": now, **verdict,
                        "reason": (f"measured tunable cost per event rose {100 * verdict['change']:.1f}% "
                                   f"({verdict['cost_per_event_before']:.3e} -> {verdict['cost_per_event_after']:.3e}"
                                   f" USD over {verdict['batches_before']} / {verdict['batches_after']} batches) "
                                   f"after BatchSize {verdict['from']} -> {verdict['to']}; rolled back")}
            state["rollbacks"] = (state.get("rollbacks") or [])[-9:] + [rollback]
            decision = Decision(old, int(last_change.get("previous_window_seconds", current_window)),
                                min(old, settings.invoke_chunk_size), rollback["reason"], len(records),
                                status="rollback")
            return decision, None, state | {"rejected": rejected}
    decision, models = choose(records, settings, current, rejected=rejected, now=now)
    return decision, models, state | {"rejected": rejected}


def retrain_and_apply(settings: Settings, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    config = store.get_item(settings.state_table, {"pk": "config"}) or {}
    current = int(config.get("batch_size") or settings.batch_size)
    current_window = int(config.get("batching_window_seconds", settings.batching_window_seconds))
    records = load_cost_records(settings)
    decision, models, state = decide(records, settings, config, now)
    model_key = None
    if models is not None:
        stamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        model_key = f"optimizer/{stamp}/model.pkl"
        buffer = io.BytesIO()
        pickle.dump({"models": models, "decision": asdict(decision)}, buffer)
        s3 = aws.client("s3")
        s3.put_object(Bucket=settings.artifacts_bucket, Key=model_key, Body=buffer.getvalue())
        s3.put_object(Bucket=settings.artifacts_bucket, Key=f"optimizer/{stamp}/metrics.json",
                      ContentType="application/json",
                      Body=json.dumps({"features": list(FEATURES), "records": decision.records,
                                       "r2_cost_oob": decision.r2_cost, "r2_latency_oob": decision.r2_latency,
                                       "latency_margin_seconds": decision.latency_margin_seconds,
                                       "decision": asdict(decision)}, default=float).encode())
    changed = (decision.batch_size, decision.batching_window_seconds) != (current, current_window)
    if changed and settings.event_source_mapping_id:
        aws.client("lambda").update_event_source_mapping(
            UUID=settings.event_source_mapping_id, BatchSize=decision.batch_size,
            MaximumBatchingWindowInSeconds=decision.batching_window_seconds)
    if changed and decision.status != "rollback" and decision.batch_size != current:
        state["last_change"] = {"applied_at": now, "batch_size": decision.batch_size,
                                "previous_batch_size": current, "previous_window_seconds": current_window,
                                "evaluated": False}
    optimizer = asdict(decision) | {"trained_at": now, "model_s3_key": model_key, "previous_batch_size": current,
                                    "applied": changed}
    history = (config.get("history") or [])[-47:] + [{"at": now, "batch_size": decision.batch_size,
                                                      "window": decision.batching_window_seconds,
                                                      "status": decision.status}]
    store.put_item(settings.state_table, {
        "pk": "config", "batch_size": decision.batch_size, "invoke_chunk_size": decision.invoke_chunk_size,
        "batching_window_seconds": decision.batching_window_seconds,
        "optimizer": optimizer, "optimizer_state": state, "history": history, "updated_at": now})
    return optimizer
