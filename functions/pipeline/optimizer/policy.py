"""The decision (pure, no AWS calls): over every (BatchSize within the step bound, window 0..floor(SLO) s), the batch
the mapping would produce at each arrival-rate scenario (queueing.predicted_batch) with its p99 wait; predicted
latency = wait + predicted processing + the latency model's out-of-bag margin. Keep the candidates within the SLO
whose throughput keeps up in every scenario (the keep-up-only scenarios, see queueing.keep_up_only, count for
nothing else); take the cheapest predicted tunable cost per event; among equals stay
nearest the current BatchSize, then the shorter window (purpose "slo" when the setting kept is predicted to break
the SLO, so the move is not judged on cost). When nothing in the step bound holds the SLO, the cheapest
setting that does (purpose "slo"); when nothing does, the lowest latency among those that keep up; when nothing
keeps up, the largest BatchSize with no window."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..settings import Settings
from . import queueing
from .model import FEATURES, FittedModels, fit_models
from .records import MIN_RECORDS, RECENT_RECORDS, training_sample

MIN_DISTINCT_SIZES = 3
MAX_STEP_FACTOR = 2.0          # a retrain moves the batch size by at most x2 or /2
REJECT_BAND = 0.10             # a rolled-back size, and sizes within +-10 % of it, stay out of the candidates
MAX_WINDOW_SECONDS = 300       # Kinesis MaximumBatchingWindowInSeconds limit


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


@dataclass
class Candidates:
    """The (BatchSize, window) pairs predicted; the last is the setting the caller may keep, predicted so that it
    is kept only while it holds the SLO, but not itself choosable (it may be a rejected size)."""
    size: np.ndarray
    window: np.ndarray
    choosable: np.ndarray


@dataclass
class Predictions:
    """Per candidate, over every arrival-rate scenario: within the SLO and keeping up (ok), keeping up, predicted
    tunable cost per event (mean over the scenarios), p99 latency (worst scenario), and the events per batch at the
    busiest "now" rate."""
    ok: np.ndarray
    keeps_up: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    events_now: np.ndarray


def _finite(value: float) -> float | None:
    """None for a latency with no bound (a setting that does not keep up: its queue grows without limit)."""
    return float(value) if math.isfinite(value) else None


def fallback(settings: Settings, reason: str, records: int) -> Decision:
    size = settings.batch_size
    return Decision(size, settings.batching_window_seconds, min(size, settings.invoke_chunk_size),
                    reason + f"; using the configured default BatchSize {size}", records, status="fallback")


def step_bound(records: list[dict], settings: Settings, current: int, window_now: int) -> tuple[int, int]:
    """(low, high) BatchSize a retrain may move to for cost: measured down from the batches the current setting
    makes (p90 of its recent batches: a BatchSize above the batches it never reaches, because a window or the load
    closes them first, is not binding, and lowering it to them changes nothing) and up from BatchSize."""
    in_force = [r["events"] for r in records[-RECENT_RECORDS:] if int(r.get("configured_batch_size", -1)) == current
                and int(r.get("configured_window_seconds", window_now)) == window_now]
    reached = min(current, float(np.quantile(in_force, 0.9))) if in_force else current
    low = max(settings.min_batch_size, int(reached / MAX_STEP_FACTOR))
    high = min(settings.max_batch_size, int(current * MAX_STEP_FACTOR))
    return low, high


def candidate_grid(settings: Settings, current: int, max_window: int, active_rejections: dict,
                   keep: tuple[int, int]) -> Candidates:
    """Every BatchSize in the settings' range but the rejected ones (and those within REJECT_BAND of them) x every
    window 0..max_window, then ``keep``."""
    sizes_grid = np.arange(settings.min_batch_size, settings.max_batch_size + 1)
    for size in active_rejections:
        sizes_grid = sizes_grid[np.abs(sizes_grid - size) > REJECT_BAND * size]
    if len(sizes_grid) == 0:
        sizes_grid = np.asarray([current])
    windows = np.arange(0, max_window + 1)
    cand_size = np.repeat(sizes_grid, len(windows))
    cand_window = np.tile(windows, len(sizes_grid))
    cand_size, cand_window = np.append(cand_size, keep[0]), np.append(cand_window, keep[1])
    return Candidates(cand_size, cand_window, np.arange(len(cand_size)) < len(cand_size) - 1)


def predict(c: Candidates, rates: dict[str, float], workload: np.ndarray, fitted: FittedModels,
            slo: float, keep_up_only: frozenset[str] | set[str] = frozenset()) -> Predictions:
    """Every candidate's batch, wait, latency and cost at every arrival-rate scenario; at those in ``keep_up_only``
    only whether it keeps up (they count neither in the cost nor in the latency)."""
    n = len(c.size)
    p = Predictions(np.ones(n, dtype=bool), np.ones(n, dtype=bool), np.zeros(n), np.zeros(n), np.zeros(n))
    judged = len(rates) - len(keep_up_only)
    for scenario, rate in rates.items():
        events = np.empty(n)
        wait99 = np.empty(n)
        stable = np.empty(n, dtype=bool)
        for w in np.unique(c.window):
            mask = c.window == w
            events[mask], wait99[mask], stable[mask] = queueing.predicted_batch(
                c.size[mask], int(w), rate, fitted.ps_fixed, fitted.ps_per_event)
        if scenario == f"now p{int(100 * queueing.RATE_QUANTILES[-1])}":
            p.events_now = events
        p.keeps_up &= stable
        p.ok &= stable
        if scenario in keep_up_only:
            continue
        grid = np.tile(workload, (n, 1))
        grid[:, 0], grid[:, 1] = events, rate
        latency = wait99 + fitted.latency.predict(grid) + fitted.margin   # vectorised: one call for every candidate
        p.ok &= latency <= slo
        p.cost += fitted.cost.predict(grid) / judged
        p.latency = np.maximum(p.latency, latency)
    return p


def _cheapest(indices: np.ndarray, cost: np.ndarray, sizes: np.ndarray, windows: np.ndarray) -> int:
    """The cheapest candidate; among equally cheap ones the largest BatchSize, then the shorter window (for a move
    made to hold the SLO). Equal cost means the BatchSize is not what closes the batch (the load or the window
    does), so a larger one is free headroom: the rates are per shard averaged over the shards, and a hotter shard
    needs more (with the smallest of the equals, a burst hour's batches kept the 2 s SLO in 58-91 % of cases in
    bench.cost_optimizer)."""
    cheapest = cost[indices].min()
    near = indices[cost[indices] <= cheapest + 1e-6 * abs(cheapest)]
    return int(near[np.lexsort((windows[near], -sizes[near]))[0]])


def select(c: Candidates, p: Predictions, low: int, high: int, current: int) -> tuple[int, str, str]:
    """(index of the chosen candidate, purpose, which rule chose it: "in bound", "beyond bound", "lowest latency"
    or "largest")."""
    in_step = (c.size >= low) & (c.size <= high) & c.choosable
    if (p.ok & in_step).any():
        cheapest = p.cost[p.ok & in_step].min()
        near = np.flatnonzero(p.ok & in_step & (p.cost <= cheapest + 1e-6 * abs(cheapest)))
        # among equally cheap candidates stay nearest the current setting (a change costs a verdict), then prefer
        # the shorter window. A move away from a setting predicted to break the SLO is made for the SLO, not as a
        # bet on cost: judged on cost, the dearer but compliant setting would be rolled back and kept out for a day
        # (in bench.cost_optimizer, BatchSize 18 and 21 were, which left out the 17..23 the quiet hours needed)
        purpose = "cost" if p.ok[-1] else "slo"   # p.ok[-1]: the setting kept (candidate_grid puts it last)
        return int(near[np.lexsort((c.window[near], np.abs(c.size[near] - current)))[0]]), purpose, "in bound"
    if (p.ok & c.choosable).any():
        # holding the SLO outranks the step bound, which limits bets on cost: take the cheapest feasible setting
        # (the nearest one to the bound sat at the edge of keeping up: a burst hour's busiest shard broke it)
        return _cheapest(np.flatnonzero(p.ok & c.choosable), p.cost, c.size, c.window), "slo", "beyond bound"
    if (p.keeps_up & c.choosable).any():
        best = int(np.flatnonzero(p.keeps_up & c.choosable)[np.argmin(p.latency[p.keeps_up & c.choosable])])
        return best, "slo", "lowest latency"
    return int(np.flatnonzero((c.window == 0) & c.choosable)[-1]), "slo", "largest"


def explain(rule: str, settings: Settings, low: int, high: int, max_window: int, margin: float,
            rates: dict[str, float]) -> str:
    """Why ``select`` chose what it did, in words (Decision.reason)."""
    slo = settings.latency_slo_seconds
    rate_text = ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
    if rule == "in bound":
        return (f"cheapest predicted tunable cost per event among BatchSize {low}..{high} x window "
                f"0..{max_window}s whose predicted p99 latency (wait + processing + {margin:.3f}s out-of-bag "
                f"error) is within the {slo:g}s SLO and whose throughput keeps up, at arrival rates per shard "
                f"({rate_text} events/s)")
    if rule == "beyond bound":
        return (f"no (BatchSize, window) in the step bound {low}..{high} x 0..{max_window}s is predicted within "
                f"the {slo:g}s SLO at arrival rates per shard ({rate_text} events/s); moved beyond it to the "
                "cheapest setting that is")
    if rule == "lowest latency":
        return (f"no (BatchSize, window) in {settings.min_batch_size}..{settings.max_batch_size} x "
                f"0..{max_window}s is predicted within the {slo:g}s SLO at arrival rates per shard ({rate_text} "
                "events/s); chose the lowest predicted latency among those that keep up with the load")
    return (f"no BatchSize in {settings.min_batch_size}..{settings.max_batch_size} keeps up with the load at "
            f"arrival rates per shard ({rate_text} events/s); chose the largest with no window")


def cost_curve(c: Candidates, p: Predictions, best: int) -> dict:
    """A few predicted points of the cost curve at the chosen window (about 8, and the chosen one), for the
    status."""
    sel = np.flatnonzero((c.window == c.window[best]) & c.choosable)
    step = max(1, len(sel) // 8)
    return {str(int(c.size[i])): {"events": float(p.events_now[i]), "cost_per_event": float(p.cost[i]),
                                  "latency_p99": _finite(p.latency[i]), "keeps_up": bool(p.keeps_up[i]),
                                  "feasible": bool(p.ok[i])}
            for i in sorted(set(sel[::step].tolist()) | {best})}


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
    fitted = fit_models(records)
    workload = np.median(fitted.x[-RECENT_RECORDS:], axis=0)
    workload[3] = datetime.fromtimestamp(now, tz=timezone.utc).hour
    # the setting must hold the SLO when the load runs below or above its median, now and in the hours ahead
    rates = queueing.rate_scenarios(loaded, now)    # every record read: the rates need whole slots
    max_window = int(min(MAX_WINDOW_SECONDS, max(0, math.floor(settings.latency_slo_seconds))))
    window_now = settings.batching_window_seconds if current_window is None else current_window
    low, high = step_bound(records, settings, current, window_now)
    active_rejections = {int(s): until for s, until in (rejected or {}).items() if float(until) > now}
    c = candidate_grid(settings, current, max_window, active_rejections, keep or (current, window_now))
    guard = queueing.keep_up_only(loaded, rates)
    p = predict(c, rates, workload, fitted, settings.latency_slo_seconds, guard)
    best, purpose, rule = select(c, p, low, high, current)
    reason = explain(rule, settings, low, high, max_window, fitted.margin, rates)
    if guard:
        reason += f"; {', '.join(sorted(guard))}: kept up with only (the load follows the daily profile)"
    if active_rejections:
        reason += f"; excluded after rollback: {sorted(active_rejections)}"
    size, window = int(c.size[best]), int(c.window[best])
    decision = Decision(
        size, window, min(size, settings.invoke_chunk_size), reason, len(records), purpose=purpose,
        r2_cost=fitted.cost.oob_score_, r2_latency=fitted.latency.oob_score_,
        latency_margin_seconds=fitted.margin, predicted_cost_per_event=float(p.cost[best]),
        predicted_latency=_finite(p.latency[best]),
        workload=dict(zip(FEATURES[1:], (float(v) for v in workload[1:]), strict=True))
        | {"rates": rates, "process_stream_fixed_seconds": fitted.ps_fixed,
           "process_stream_seconds_per_event": fitted.ps_per_event,
           "predicted_events_per_batch": float(p.events_now[best])},
        candidates=cost_curve(c, p, best), keep_holds_slo=bool(p.ok[-1]))
    return decision, {"cost": fitted.cost, "latency": fitted.latency, "features": FEATURES}
