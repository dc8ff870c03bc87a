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

Guard rails: a retrain moves BatchSize by at most MAX_STEP_FACTOR, measured down from the batches the current
setting reaches (p90 of its recent batches: a BatchSize they never reach is not binding) and up from BatchSize,
unless no setting within that bound is predicted to hold the SLO (then the nearest one that is); too little data ->
the configured default;
after a change, the next retrain compares the measured cost per event under the new setting with the setting
before at comparable arrival rates (at least MIN_COMPARE batches each); if the new one is more than
ROLLBACK_TOLERANCE dearer it rolls back, records why, and keeps that size out of the candidates for REJECT_SECONDS.

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
from typing import Any

import numpy as np
from boto3.dynamodb.conditions import Key
from scipy.special import gammaincinv

from . import aws, batch_config, store
from .batch_config import BatchConfig
from .settings import Settings

MIN_RECORDS = 30
MIN_DISTINCT_SIZES = 3
MAX_STEP_FACTOR = 2.0          # a retrain moves the batch size by at most x2 or /2
HISTORY_DAYS = 7
RECORDS_PER_HOUR = 150         # newest records read per hour of history ...
SLOT_SECONDS = 600             # ... spread over its 10-minute slots (25 each): the load varies within an hour
MAX_TRAIN_RECORDS = 5000       # newest records used for training
RECENT_RECORDS = 100           # the workload now = medians over the newest records
MIN_COMPARE = 20               # batches needed on each side before judging a change
ROLLBACK_TOLERANCE = 0.05      # roll back when the new setting's measured cost is > 5 % above the old one
REJECT_SECONDS = 24 * 3600     # a rolled-back size stays out of the candidates this long
REJECT_BAND = 0.10             # ... and so do sizes within +-10 % of it
EVALUATION_SECONDS = 3 * 3600  # a change that found no comparable load within this long is left as inconclusive
MAX_WINDOW_SECONDS = 300       # Kinesis MaximumBatchingWindowInSeconds limit
HEADROOM = 1.5                # throughput a setting must have over the arrival rate: queues build near 1.0,
                              # and the rates are averaged over the shards (the records carry no shard id),
                              # so a hotter shard sits above them (at 1.25, bursts broke the SLO in the bench)
RATE_QUANTILES = (0.1, 1.0)   # slot arrival-rate quantiles the SLO must hold at (the busiest slot: a day
                              # gives 6 slots per hour, and a burst hour's p90 of them was exceeded the next day)
NOW_SLOTS = 3                  # "now" = the arrival rates of the newest 3 slots (half an hour)
DECISION_SECONDS = 3600        # a decision stays in force until the next retrain (retrainSchedule rate(1 hour))
NEXT_HOUR_GRACE = 300          # ... the next hour of the day counts when the decision runs > 5 min into it
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
    purpose: str = "cost"                # cost: the cheapest within the step bound | slo: moved to hold the SLO
    r2_cost: float | None = None
    r2_latency: float | None = None
    latency_margin_seconds: float | None = None
    predicted_cost_per_event: float | None = None
    predicted_latency: float | None = None    # None: no bound (the chosen setting does not keep up)
    workload: dict = field(default_factory=dict)
    candidates: dict = field(default_factory=dict)   # a few predicted points of the cost curve, for the status
    keep_holds_slo: bool | None = None    # whether the setting the caller may keep (choose's keep) holds the SLO


def _finite(value: float) -> float | None:
    """None for a latency with no bound (a setting that does not keep up: its queue grows without limit)."""
    return float(value) if math.isfinite(value) else None


def load_cost_records(settings: Settings, days: int = HISTORY_DAYS, per_hour: int = RECORDS_PER_HOUR,
                      now: float | None = None) -> list[dict]:
    """The newest ``per_hour`` cost records of every hour of the last ``days`` days, spread over the hour's
    SLOT_SECONDS slots, oldest first: a busy hour writes thousands of records, and the newest 20,000 would all come
    from the last minutes of one setting; the newest of an hour alone would show its last seconds, not how its load
    varies. One Query per slot on the day partition (sort key = ISO time#batch id)."""
    now = time.time() if now is None else now
    records: list[dict] = []
    slots = 3600 // SLOT_SECONDS
    end = datetime.fromtimestamp(now, tz=timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for back in range(days * 24 * slots, 0, -1):
        start = end - timedelta(seconds=back * SLOT_SECONDS)
        stop = start + timedelta(seconds=SLOT_SECONDS)
        records += store.query(settings.cost_table, limit=max(1, per_hour // slots), ScanIndexForward=False,
                               KeyConditionExpression=Key("day").eq(start.strftime("%Y-%m-%d"))
                               & Key("batch_key").between(start.isoformat(), stop.isoformat()))
    return sorted(records, key=lambda r: float(r["recorded_at"]))


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


def training_sample(records: list[dict], limit: int = MAX_TRAIN_RECORDS, seed: int = 0) -> list[dict]:
    """The newest RECENT_RECORDS, and an even sample of the older ones (so the model keeps the settings and
    hours it saw before, not only the last few minutes of one setting). Oldest first."""
    if len(records) <= limit:
        return records
    rng = np.random.default_rng(seed)
    older = records[:-RECENT_RECORDS]
    keep = np.sort(rng.choice(len(older), size=limit - RECENT_RECORDS, replace=False))
    return [older[i] for i in keep] + records[-RECENT_RECORDS:]


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


def arrival_time99(count: np.ndarray, rate: float) -> np.ndarray:
    """The 99th percentile of the time Poisson arrivals at ``rate``/s take to bring ``count`` more records (a
    Gamma(count, 1/rate) quantile). The mean, count / rate, is what a window is filled in half the time: the p99
    wait of a batch that closes when full must use the slow fills (measured in bench.cost_optimizer: with the mean,
    BatchSize 25 and a 2 s window at ~20 events/s held a 2 s SLO in 59-91 % of an hour's batches)."""
    count = np.maximum(np.asarray(count, dtype=float), 0.0)
    return np.where(count > 0, gammaincinv(np.maximum(count, 1e-9), 0.99) / rate, 0.0)


def predicted_batch(size: np.ndarray, window: int, rate: float, ps_fixed: float, ps_per_event: float):
    """The batch a (BatchSize, window) produces at ``rate`` events/s per shard, the p99 wait of its oldest event
    before process_stream starts, and whether the shard keeps up.

    A shard's reader waits for process_stream before reading again, so a batch opens with the records that arrived
    during the previous invocation (g = rate x cycle). If none arrived (probability exp(-g)) the shard idles and
    is polled once per second, so the next record may wait up to a poll. The window then adds what arrives within
    it: the batch closes when BatchSize is reached or the window passes. The shard keeps up when BatchSize leaves
    HEADROOM over the equilibrium batch (backlog closes batches at once, so the window does not matter there).
    Returns (events, wait99, stable) arrays."""
    size = np.asarray(size, dtype=float)
    cycle = ps_fixed + LAMBDA_OVERHEAD_S
    if rate <= 0:
        return (np.ones_like(size), np.full_like(size, 0.99 * POLL_INTERVAL_S + window),
                np.ones_like(size, dtype=bool))
    if HEADROOM * rate * ps_per_event >= 1:     # even an endless batch cannot keep up
        return np.array(size), np.full_like(size, np.inf), np.zeros_like(size, dtype=bool)
    events = np.clip(rate * cycle / (1 - rate * ps_per_event) + rate * window, 1, size)
    for _ in range(3):                          # batch <-> processing time of the previous batch
        busy_cycle = cycle + ps_per_event * events
        gathered = rate * busy_cycle
        p_idle = np.exp(-gathered)
        gathered = gathered + p_idle * rate * POLL_INTERVAL_S / 2     # idle shards gather during the poll wait
        full = gathered + rate * window >= size
        fill = np.where(full, np.clip(arrival_time99(size - gathered, rate), 0.0, window), float(window))
        events = np.where(full, size, np.clip(np.floor(gathered + rate * window), 1, size))
    # p99 of the oldest event's wait: busy, one processing cycle and the fill; when the shard idles more than 1 %
    # of the time, the poll wait u at the quantile that leaves 1 % overall, during which the batch gathers too
    # (so it then fills sooner: the oldest waits max(u, min(u + window, time for BatchSize - 1 more records)))
    u = POLL_INTERVAL_S * np.clip(1 - 0.01 / np.maximum(p_idle, 1e-12), 0.0, 1.0)
    idle_wait = np.where(p_idle > 0.01, np.maximum(u, np.minimum(u + window, arrival_time99(size - 1, rate))), 0.0)
    wait99 = np.maximum(busy_cycle + fill, idle_wait)
    stable = size >= HEADROOM * rate * cycle / (1 - HEADROOM * rate * ps_per_event)
    return events, wait99, stable


def slot_rates(records: list[dict]) -> list[tuple[float, int, float, int]]:
    """(slot start, hour of day, arrival rate per shard, records) per SLOT_SECONDS slot of the records, oldest
    first. A single batch's rate (arrival_rate) is a poor estimate: a one-event batch has no gap to measure (its
    span is the 1 s poll floor, costs.span_seconds), and a batch's n events span n - 1 gaps of the n + 1 its
    gathering took. So a slot's rate is its events over the time its batches of >= 2 events gathered for, each
    span (n gaps) scaled to n + 1 gaps; a slot of one-event batches only (a quiet shard) uses the spans as they
    are. (In bench.cost_optimizer's mapping at ~20 events/s per shard, the spans as they are read 30 % low with no
    window; these read 5-15 % high with no window and 2-5 % low with a 1 s window, against the arrivals.)"""
    slots: dict[float, np.ndarray] = {}
    for r in records:
        rate, events = float(r.get("arrival_rate") or 0.0), int(r["events"])
        if rate > 0:
            start = float(r["recorded_at"]) // SLOT_SECONDS * SLOT_SECONDS
            gaps = (events, events / rate * (events + 1) / events) if events >= 2 else (0, 0.0)
            slots[start] = slots.get(start, np.zeros(5)) + (events, events / rate, *gaps, 1)
    out = []
    for start, (events, span, gap_events, gap_span, count) in sorted(slots.items()):
        rate = gap_events / gap_span if gap_events else events / span
        out.append((start, datetime.fromtimestamp(start, tz=timezone.utc).hour, float(rate), int(count)))
    return out


def decision_hours(now: float) -> list[int]:
    """The hours of the day the decision stays in force for: this one, and the next when the next retrain comes
    more than NEXT_HOUR_GRACE into it (a schedule on the hour, cron(0 * * * ? *), needs to hold only this hour)."""
    start = datetime.fromtimestamp(now, tz=timezone.utc)
    end = datetime.fromtimestamp(now + DECISION_SECONDS - NEXT_HOUR_GRACE, tz=timezone.utc)
    return [start.hour] if end.hour == start.hour else [start.hour, end.hour]


def rate_scenarios(records: list[dict], now: float) -> dict[str, float]:
    """The arrival rates per shard the setting must hold the SLO at until the next retrain: the RATE_QUANTILES of
    the slot rates now (the newest NOW_SLOTS slots) and of the hours of the day it will be in force for (every
    older slot of those hours in the history: the daily profile, once there is a day of records)."""
    slots = slot_rates(records)
    recent, history = slots[-NOW_SLOTS:], slots[:-NOW_SLOTS]
    groups = {"now": recent}
    for i, hour in enumerate(decision_hours(now)):
        rows = [s for s in history if s[1] == hour]
        if sum(s[3] for s in rows) >= MIN_RECORDS:
            groups["this hour" if i == 0 else "next hour"] = rows
    rates = {}
    for name, rows in groups.items():
        values = np.asarray([s[2] for s in rows])
        for q in RATE_QUANTILES:
            rates[f"{name} p{int(100 * q)}"] = float(np.quantile(values, q)) if len(values) else 0.0
    return rates


def _cheapest(indices: np.ndarray, cost: np.ndarray, sizes: np.ndarray, windows: np.ndarray) -> int:
    """The cheapest candidate; among equally cheap ones the largest BatchSize, then the shorter window (for a move
    made to hold the SLO). Equal cost means the BatchSize is not what closes the batch (the load or the window
    does), so a larger one is free headroom: the rates are per shard averaged over the shards, and a hotter shard
    needs more (with the smallest of the equals, a burst hour's batches kept the 2 s SLO in 58-91 % of cases in
    bench.cost_optimizer)."""
    cheapest = cost[indices].min()
    near = indices[cost[indices] <= cheapest + 1e-6 * abs(cheapest)]
    return int(near[np.lexsort((windows[near], -sizes[near]))[0]])


def choose(records: list[dict], settings: Settings, current: int, rejected: dict | None = None,
           now: float | None = None, current_window: int | None = None,
           keep: tuple[int, int] | None = None) -> tuple[Decision, dict | None]:
    """Pure decision logic (no AWS calls): the decision and the fitted models (None when it fell back).
    ``keep``: a (BatchSize, window) the caller may keep instead (default: the current one); the decision says
    whether it is predicted to hold the SLO (keep_holds_slo)."""
    now = time.time() if now is None else now
    loaded = [r for r in records if int(r.get("events", 0)) > 0]
    records = training_sample(loaded)
    sizes = {int(r["events"]) for r in records}
    if len(records) < MIN_RECORDS or len(sizes) < MIN_DISTINCT_SIZES:
        return fallback(settings, f"too little data: {len(records)} cost records over {len(sizes)} batch sizes "
                                  f"(need {MIN_RECORDS} over {MIN_DISTINCT_SIZES})", len(records)), None
    x = feature_matrix(records)
    cost = np.asarray([_target_cost(r) for r in records])
    processing = np.asarray([processing_seconds(r) for r in records])
    cost_model = Hybrid(_per_batch_basis).fit(x, cost)
    latency_model = Hybrid(_linear_basis).fit(x, processing)
    margin = max(0.0, float(np.quantile(processing - latency_model.oob_prediction_, 0.99)))
    # process_stream seconds = a + b x events (it paces the shard: the next batch waits for it)
    slope, intercept = np.polyfit(x[:, 0], x[:, 0] * x[:, 4], 1)
    ps_fixed, ps_per_event = max(float(intercept), 0.0), max(float(slope), 0.0)

    recent = x[-RECENT_RECORDS:]
    workload = np.median(recent, axis=0)
    hour = datetime.fromtimestamp(now, tz=timezone.utc).hour
    workload[3] = hour
    # the setting must hold the SLO when the load runs below or above its median, now and in the hours ahead
    rates = rate_scenarios(loaded, now)    # every record read: the rates need whole slots
    slo = settings.latency_slo_seconds
    max_window = int(min(MAX_WINDOW_SECONDS, max(0, math.floor(slo))))

    # the step bound is measured from the batches the current setting makes: a BatchSize above the batches it
    # never reaches (a window or the load closes them first) is not binding, and lowering it to them changes nothing
    window_now = settings.batching_window_seconds if current_window is None else current_window
    in_force = [r["events"] for r in records[-RECENT_RECORDS:] if int(r.get("configured_batch_size", -1)) == current
                and int(r.get("configured_window_seconds", window_now)) == window_now]
    reached = min(current, float(np.quantile(in_force, 0.9))) if in_force else current
    low = max(settings.min_batch_size, int(reached / MAX_STEP_FACTOR))
    high = min(settings.max_batch_size, int(current * MAX_STEP_FACTOR))
    sizes_grid = np.arange(settings.min_batch_size, settings.max_batch_size + 1)
    active_rejections = {int(s): until for s, until in (rejected or {}).items() if float(until) > now}
    for size in active_rejections:
        sizes_grid = sizes_grid[np.abs(sizes_grid - size) > REJECT_BAND * size]
    if len(sizes_grid) == 0:
        sizes_grid = np.asarray([current])
    windows = np.arange(0, max_window + 1)
    cand_size = np.repeat(sizes_grid, len(windows))
    cand_window = np.tile(windows, len(sizes_grid))
    # the setting the caller may keep is predicted too (last), so that it is kept only while it holds the SLO; it is
    # not itself a candidate (it may be a rejected size)
    keep = keep or (current, window_now)
    cand_size, cand_window = np.append(cand_size, keep[0]), np.append(cand_window, keep[1])
    choosable = np.arange(len(cand_size)) < len(cand_size) - 1
    ok = np.ones(len(cand_size), dtype=bool)
    keeps_up = np.ones(len(cand_size), dtype=bool)
    predicted_cost = np.zeros(len(cand_size))
    predicted_latency = np.zeros(len(cand_size))
    events_now = np.zeros(len(cand_size))
    for scenario, rate in rates.items():
        events = np.empty(len(cand_size))
        wait99 = np.empty(len(cand_size))
        stable = np.empty(len(cand_size), dtype=bool)
        for w in np.unique(cand_window):
            mask = cand_window == w
            events[mask], wait99[mask], stable[mask] = predicted_batch(cand_size[mask], int(w), rate, ps_fixed,
                                                                       ps_per_event)
        grid = np.tile(workload, (len(cand_size), 1))
        grid[:, 0], grid[:, 1] = events, rate
        latency = wait99 + latency_model.predict(grid) + margin   # vectorised: one call for every candidate
        ok &= stable & (latency <= slo)
        keeps_up &= stable
        predicted_cost += cost_model.predict(grid) / len(rates)
        predicted_latency = np.maximum(predicted_latency, latency)
        if scenario == f"now p{int(100 * RATE_QUANTILES[-1])}":
            events_now = events
    rate_text = ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
    in_step = (cand_size >= low) & (cand_size <= high) & choosable
    purpose = "cost"
    if (ok & in_step).any():
        cheapest = predicted_cost[ok & in_step].min()
        cheapest = predicted_cost[ok & in_step].min()
        near = np.flatnonzero(ok & in_step & (predicted_cost <= cheapest + 1e-6 * abs(cheapest)))
        # among equally cheap candidates stay nearest the current setting (a change costs a verdict), then prefer
        # the shorter window
        best = int(near[np.lexsort((cand_window[near], np.abs(cand_size[near] - current)))[0]])
        reason = (f"cheapest predicted tunable cost per event among BatchSize {low}..{high} x window "
                  f"0..{max_window}s whose predicted p99 latency (wait + processing + {margin:.3f}s out-of-bag "
                  f"error) is within the {slo:g}s SLO and whose throughput keeps up, at arrival rates per shard "
                  f"({rate_text} events/s)")
    elif (ok & choosable).any():
        # holding the SLO outranks the step bound, which limits bets on cost: take the cheapest feasible setting
        # (the nearest one to the bound sat at the edge of keeping up: a burst hour's busiest shard broke it)
        best, purpose = _cheapest(np.flatnonzero(ok & choosable), predicted_cost, cand_size, cand_window), "slo"
        reason = (f"no (BatchSize, window) in the step bound {low}..{high} x 0..{max_window}s is predicted within "
                  f"the {slo:g}s SLO at arrival rates per shard ({rate_text} events/s); moved beyond it to the "
                  "cheapest setting that is")
    elif (keeps_up & choosable).any():
        best = int(np.flatnonzero(keeps_up & choosable)[np.argmin(predicted_latency[keeps_up & choosable])])
        purpose = "slo"
        reason = (f"no (BatchSize, window) in {settings.min_batch_size}..{settings.max_batch_size} x "
                  f"0..{max_window}s is predicted within the {slo:g}s SLO at arrival rates per shard ({rate_text} "
                  "events/s); chose the lowest predicted latency among those that keep up with the load")
    else:
        best, purpose = int(np.flatnonzero((cand_window == 0) & choosable)[-1]), "slo"
        reason = (f"no BatchSize in {settings.min_batch_size}..{settings.max_batch_size} keeps up with the load at "
                  f"arrival rates per shard ({rate_text} events/s); chose the largest with no window")
    if active_rejections:
        reason += f"; excluded after rollback: {sorted(active_rejections)}"
    size, window = int(cand_size[best]), int(cand_window[best])
    sel = np.flatnonzero((cand_window == window) & choosable)
    step = max(1, len(sel) // 8)
    curve = {str(int(cand_size[i])): {"events": float(events_now[i]), "cost_per_event": float(predicted_cost[i]),
                                      "latency_p99": _finite(predicted_latency[i]), "keeps_up": bool(keeps_up[i]),
                                      "feasible": bool(ok[i])}
             for i in sorted(set(sel[::step].tolist()) | {best})}
    decision = Decision(
        size, window, min(size, settings.invoke_chunk_size), reason, len(records), purpose=purpose,
        r2_cost=cost_model.oob_score_, r2_latency=latency_model.oob_score_,
        latency_margin_seconds=margin, predicted_cost_per_event=float(predicted_cost[best]),
        predicted_latency=_finite(predicted_latency[best]),
        workload=dict(zip(FEATURES[1:], (float(v) for v in workload[1:]), strict=True))
        | {"rates": rates, "process_stream_fixed_seconds": ps_fixed,
           "process_stream_seconds_per_event": ps_per_event, "predicted_events_per_batch": float(events_now[best])},
        candidates=curve, keep_holds_slo=bool(ok[-1]))
    return decision, {"cost": cost_model, "latency": latency_model, "features": FEATURES}


def measured_cost(records: list[dict]) -> float | None:
    events = sum(int(r["events"]) for r in records)
    if not events:
        return None
    return sum(_target_cost(r) * int(r["events"]) for r in records) / events


def evaluate_change(records: list[dict], last_change: dict, now: float | None = None) -> dict:
    """Compare the measured cost per event under the new setting with the setting before it, at comparable load:
    batches are grouped by arrival rate (bins x1.5 wide) and only bins both settings saw are compared, weighted
    by the new setting's events (a change that happened as the load fell would otherwise look dearer).
    Returns {"verdict": "pending"|"kept"|"rollback"|"inconclusive", ...figures}."""
    now = time.time() if now is None else now
    applied_at = float(last_change["applied_at"])
    new, old = int(last_change["batch_size"]), int(last_change["previous_batch_size"])
    after = [r for r in records if float(r["recorded_at"]) >= applied_at
             and int(r.get("configured_batch_size", -1)) == new]
    before = [r for r in records if float(r["recorded_at"]) < applied_at
              and int(r.get("configured_batch_size", -1)) == old]

    def by_bin(rows):
        bins: dict[int, list[dict]] = {}
        for r in rows:
            rate = float(r.get("arrival_rate") or 0.0)
            bins.setdefault(int(math.floor(math.log(rate) / math.log(1.5))) if rate > 0 else -99, []).append(r)
        return bins

    b_before, b_after = by_bin(before), by_bin(after)
    shared = sorted(set(b_before) & set(b_after))
    matched_before = [r for k in shared for r in b_before[k]]
    matched_after = [r for k in shared for r in b_after[k]]
    result: dict[str, Any] = {"batches_before": len(before), "batches_after": len(after),
                              "matched_before": len(matched_before), "matched_after": len(matched_after),
                              "from": old, "to": new}
    if len(matched_after) < MIN_COMPARE or len(matched_before) < MIN_COMPARE:
        if now - applied_at > EVALUATION_SECONDS:
            return result | {"verdict": "inconclusive"}
        return result | {"verdict": "pending"}
    weights = {k: sum(int(r["events"]) for r in b_after[k]) for k in shared}
    total = sum(weights.values())
    cost_before = sum(weights[k] * (measured_cost(b_before[k]) or 0.0) for k in shared) / total
    cost_after = sum(weights[k] * (measured_cost(b_after[k]) or 0.0) for k in shared) / total
    result |= {"cost_per_event_before": cost_before, "cost_per_event_after": cost_after,
               "change": cost_after / cost_before - 1 if cost_before else None}
    if cost_before and cost_after > cost_before * (1 + ROLLBACK_TOLERANCE):
        return result | {"verdict": "rollback"}
    return result | {"verdict": "kept"}


def decide(records: list[dict], settings: Settings, config: BatchConfig, now: float
           ) -> tuple[Decision, dict | None, dict]:
    """Rollback check, then choose. Returns (decision, models, optimizer state to keep in the config item)."""
    state = dict(config.optimizer_state)
    rejected = {k: v for k, v in (state.get("rejected") or {}).items() if float(v) > now}
    current, current_window = config.batch_size, config.batching_window_seconds
    last_change = state.get("last_change")
    if last_change and not last_change.get("evaluated"):
        if last_change.get("purpose") == "slo":
            # a move made to hold the SLO or keep up with the load is not undone for costing more
            verdict: dict[str, Any] = {"verdict": "kept", "reason": "made to hold the SLO: not judged on cost",
                               "from": int(last_change["previous_batch_size"]), "to": int(last_change["batch_size"])}
        else:
            verdict = evaluate_change(records, last_change, now)
        if verdict["verdict"] == "pending":
            decision, models = choose(records, settings, current, rejected=rejected, now=now,
                                      current_window=current_window)
            if decision.purpose == "slo" or decision.keep_holds_slo is False:
                # the load changed (the hour ahead differs): holding the SLO cannot wait for the verdict
                state["last_change"] = dict(last_change, evaluated=True,
                                            evaluation=verdict | {"verdict": "superseded"})
                return decision, models, state | {"rejected": rejected}
            decision = Decision(current, current_window, config.invoke_chunk_size if config.applied
                                else min(current, settings.invoke_chunk_size),
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
            rollback: dict[str, Any] = {"at": now, **verdict,
                        "reason": (f"measured tunable cost per event rose {100 * verdict['change']:.1f}% "
                                   f"({verdict['cost_per_event_before']:.3e} -> {verdict['cost_per_event_after']:.3e}"
                                   f" USD over {verdict['batches_before']} / {verdict['batches_after']} batches) "
                                   f"after BatchSize {verdict['from']} -> {verdict['to']}; rolled back")}
            state["rollbacks"] = (state.get("rollbacks") or [])[-9:] + [rollback]
            old_window = int(last_change.get("previous_window_seconds", current_window))
            fresh, models = choose(records, settings, current, rejected=rejected, now=now,
                                   current_window=current_window, keep=(old, old_window))
            if fresh.keep_holds_slo is False:
                # the load ahead differs from the one the old setting was judged on: restoring it would break the
                # SLO, so choose again (the dearer size stays rejected)
                fresh.reason = (rollback["reason"].replace("; rolled back", "") + f"; BatchSize {old} with a "
                                f"{old_window}s window is not predicted to hold the SLO now, so not restored; "
                                + fresh.reason)
                return fresh, models, state | {"rejected": rejected}
            decision = Decision(old, old_window, min(old, settings.invoke_chunk_size), rollback["reason"],
                                len(records), status="rollback")
            return decision, None, state | {"rejected": rejected}
    decision, models = choose(records, settings, current, rejected=rejected, now=now,
                              current_window=current_window)
    return decision, models, state | {"rejected": rejected}


def record_change(state: dict, decision: Decision, current: int, current_window: int, now: float) -> dict:
    """The optimizer state after applying ``decision``: a new BatchSize chosen by the model becomes the change
    the next retrain judges (a rollback is not itself judged)."""
    if decision.status != "rollback" and decision.batch_size != current:
        state = state | {"last_change": {"applied_at": now, "batch_size": decision.batch_size,
                                         "previous_batch_size": current, "previous_window_seconds": current_window,
                                         "purpose": decision.purpose, "evaluated": False}}
    return state


def retrain_and_apply(settings: Settings, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    config = batch_config.read(settings)
    current, current_window = config.batch_size, config.batching_window_seconds
    records = load_cost_records(settings, now=now)
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
    state = record_change(state, decision, current, current_window, now)
    optimizer = asdict(decision) | {"trained_at": now, "model_s3_key": model_key, "previous_batch_size": current,
                                    "applied": changed}
    history = config.history[-47:] + [{"at": now, "batch_size": decision.batch_size,
                                                      "window": decision.batching_window_seconds,
                                                      "status": decision.status}]
    store.put_item(settings.state_table, {
        "pk": "config", "batch_size": decision.batch_size, "invoke_chunk_size": decision.invoke_chunk_size,
        "batching_window_seconds": decision.batching_window_seconds,
        "optimizer": optimizer, "optimizer_state": state, "history": history, "updated_at": now})
    return optimizer
