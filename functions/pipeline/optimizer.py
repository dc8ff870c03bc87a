"""Self-tuning batch size: learn cost per event and latency from the cost records, pick the cheapest batch size
(and batching window) that keeps the latency SLO, and apply it (event source mapping BatchSize and
MaximumBatchingWindowInSeconds, and the invocation chunk size in the STATE_TABLE "config" item).

Model: two scikit-learn RandomForests on the cost records, features = FEATURES (the batch's events, i.e. the
batch size it turned out to have, and the workload: per-shard arrival rate, bytes per event, hour of day, recent
process_stream and invoke_model seconds per event). Targets: the tunable cost per event (the cost lines a batch
setting can change, see costs.py; shard-hours and other attributed lines do not depend on it) and the batch's
processing latency (latency of its oldest event minus what that event waited before process_stream started).

Choice: over every (BatchSize B within the step bound, window W in 0..floor(SLO) s), the batch the mapping would
produce at the current arrival rate is worked out from how a shard is read (predicted_batch: an idle shard is
polled once per second, a busy one as soon as process_stream returns; the window adds what arrives within it, up
to B), with its p99 wait. Predicted latency = wait + predicted processing + the 99th percentile of the latency
model's out-of-bag error. Keep candidates within the SLO whose throughput keeps up with the arrival rate; take the
cheapest predicted cost per event; among equals, stay nearest the current BatchSize, then the shorter window.

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
POLL_INTERVAL_S = 1.0          # Lambda polls an idle shard once per second
LAMBDA_OVERHEAD_S = 0.02       # invoke overhead between two process_stream invocations of a shard (estimate)
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


def wait_seconds(r: dict) -> float:
    """What the batch's oldest event waited before process_stream started (in the record since this version;
    0 for older records, which makes their processing latency the whole latency: conservative)."""
    return max(0.0, float(r.get("wait_seconds") or 0.0))


def processing_seconds(r: dict) -> float:
    return max(0.0, float(r["latency_max"]) - wait_seconds(r))


def predicted_batch(size: np.ndarray, window: int, rate: float, ps_fixed: float, ps_per_event: float):
    """The batch a (BatchSize, window) produces at ``rate`` events/s per shard, and the p99 wait of its oldest
    event before process_stream starts. An idle shard is polled once per second (records gather for up to a
    poll interval, the oldest waits up to one); a busy one is read as soon as process_stream returns (records
    gather during the previous invocation). Then the window adds what arrives within it, up to BatchSize.
    Returns (events, wait99, stable) arrays."""
    size = np.asarray(size, dtype=float)
    if rate <= 0:
        return np.ones_like(size), np.full_like(size, POLL_INTERVAL_S + window), np.ones_like(size, dtype=bool)
    cycle = ps_fixed + LAMBDA_OVERHEAD_S
    # busy fixed point: a batch gathers what arrived during the previous batch's processing
    busy_events = rate * cycle / max(1e-9, 1 - rate * ps_per_event) if rate * ps_per_event < 1 else np.inf
    busy = rate * (cycle + ps_per_event * np.minimum(size, max(1.0, rate * POLL_INTERVAL_S))) >= 1.0
    gathered = np.where(busy, busy_events, rate * POLL_INTERVAL_S / 2)          # mean, for the cost
    events = np.maximum(1.0, np.minimum(size, np.floor(gathered + rate * window)))
    fill = np.minimum(window, np.maximum(0.0, (events - gathered) / rate))
    wait99 = np.where(busy, ps_fixed + ps_per_event * events + LAMBDA_OVERHEAD_S, 0.99 * POLL_INTERVAL_S) + fill
    throughput = events / (ps_fixed + ps_per_event * events + LAMBDA_OVERHEAD_S)
    stable = throughput >= 1.1 * rate       # else the shard falls behind and the backlog (and latency) grows
    return events, wait99, stable


def choose(records: list[dict], settings: Settings, current: int, rejected: dict | None = None,
           now: float | None = None, current_window: int | None = None) -> tuple[Decision, dict | None]:
    """Pure decision logic (no AWS calls): the decision and the fitted models (None when it fell back)."""
    now = time.time() if now is None else now
    current_window = settings.batching_window_seconds if current_window is None else current_window
    records = [r for r in records if int(r.get("events", 0)) > 0][-MAX_TRAIN_RECORDS:]
    sizes = {int(r["events"]) for r in records}
    if len(records) < MIN_RECORDS or len(sizes) < MIN_DISTINCT_SIZES:
        return fallback(settings, f"too little data: {len(records)} cost records over {len(sizes)} batch sizes "
                                  f"(need {MIN_RECORDS} over {MIN_DISTINCT_SIZES})", len(records)), None
    x = feature_matrix(records)
    cost = np.asarray([_target_cost(r) for r in records])
    processing = np.asarray([processing_seconds(r) for r in records])
    cost_model = _forest().fit(x, cost)
    latency_model = _forest().fit(x, processing)
    residuals = processing - latency_model.oob_prediction_
    margin = max(0.0, float(np.quantile(residuals, 0.99)))
    # process_stream seconds = a + b x events (it paces the shard: the next batch waits for it)
    slope, intercept = np.polyfit(x[:, 0], x[:, 0] * x[:, 4], 1)
    ps_fixed, ps_per_event = max(float(intercept), 0.0), max(float(slope), 0.0)

    recent = x[-RECENT_RECORDS:]
    rate = float(np.median(recent[:, 1]))
    workload = np.median(recent, axis=0)
    workload[3] = datetime.fromtimestamp(now, tz=timezone.utc).hour
    slo = settings.latency_slo_seconds
    max_window = int(min(MAX_WINDOW_SECONDS, max(0, math.floor(slo))))

    low = max(settings.min_batch_size, int(current / MAX_STEP_FACTOR))
    high = min(settings.max_batch_size, int(current * MAX_STEP_FACTOR))
    sizes_grid = np.arange(low, high + 1)
    active_rejections = {int(s): until for s, until in (rejected or {}).items() if float(until) > now}
    for size in active_rejections:
        sizes_grid = sizes_grid[np.abs(sizes_grid - size) > REJECT_BAND * size]
    if len(sizes_grid) == 0:
        sizes_grid = np.asarray([current])
    windows = np.arange(0, max_window + 1)
    cand_size = np.repeat(sizes_grid, len(windows))
    cand_window = np.tile(windows, len(sizes_grid))
    events = np.empty(len(cand_size))
    wait99 = np.empty(len(cand_size))
    stable = np.empty(len(cand_size), dtype=bool)
    for w in windows:
        mask = cand_window == w
        events[mask], wait99[mask], stable[mask] = predicted_batch(cand_size[mask], int(w), rate, ps_fixed,
                                                                   ps_per_event)
    grid = np.tile(workload, (len(cand_size), 1))
    grid[:, 0] = events
    predicted_cost = cost_model.predict(grid)              # vectorised: one call for every candidate
    predicted_latency = wait99 + latency_model.predict(grid) + margin
    ok = stable & (predicted_latency <= slo)
    if ok.any():
        cheapest = predicted_cost[ok].min()
        near = np.flatnonzero(ok & (predicted_cost <= cheapest * (1 + 1e-9)))
        # among equally cheap candidates (the forest is flat beyond its data) stay nearest the current setting
        best = int(near[np.lexsort((cand_window[near], np.abs(cand_size[near] - current)))[0]])
        reason = (f"cheapest predicted tunable cost per event among BatchSize {low}..{high} x window "
                  f"0..{max_window}s whose predicted p99 latency (wait {wait99[best]:.2f}s + processing, "
                  f"+{margin:.3f}s out-of-bag error) is within the {slo:g}s SLO, at {rate:.1f} events/s per shard")
        status = "trained"
    else:
        best = int(np.argmin(np.where(stable, predicted_latency, np.inf)) if stable.any()
                   else np.argmax(cand_size))
        reason = (f"no (BatchSize, window) in {low}..{high} x 0..{max_window}s is predicted within the {slo:g}s "
                  f"SLO at {rate:.1f} events/s per shard; chose the lowest predicted latency")
        status = "trained"
    if active_rejections:
        reason += f"; excluded after rollback: {sorted(active_rejections)}"
    size, window = int(cand_size[best]), int(cand_window[best])
    sel = np.flatnonzero(cand_window == window)
    step = max(1, len(sel) // 8)
    curve = {str(int(cand_size[i])): {"events": float(events[i]), "cost_per_event": float(predicted_cost[i]),
                                      "latency_p99": float(predicted_latency[i]), "stable": bool(stable[i])}
             for i in sorted(set(sel[::step]) | {best})}
    decision = Decision(
        size, window, min(size, settings.invoke_chunk_size), reason, len(records), status=status,
        r2_cost=float(cost_model.oob_score_), r2_latency=float(latency_model.oob_score_),
        latency_margin_seconds=margin, predicted_cost_per_event=float(predicted_cost[best]),
        predicted_latency=float(predicted_latency[best]),
        workload=dict(zip(FEATURES[1:], (float(v) for v in workload[1:])))
        | {"process_stream_fixed_seconds": ps_fixed, "process_stream_seconds_per_event": ps_per_event,
           "predicted_events_per_batch": float(events[best])},
        candidates=curve)
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
    decision, models = choose(records, settings, current, rejected=rejected, now=now,
                              current_window=current_window)
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
