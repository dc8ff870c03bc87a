"""How a shard's batches form, and the load they must be sized for: the batch a (BatchSize, window) produces at
an arrival rate with the p99 wait of its oldest event and whether the shard keeps up (predicted_batch), and the
arrival rates per shard measured from the cost records (slot_rates) that the setting must hold the SLO at until the
next retrain (rate_scenarios)."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from scipy.special import gammaincinv

from .records import MIN_RECORDS, SLOT_SECONDS, arrived_at

HEADROOM = 1.5                # throughput a setting must have over the arrival rate: queues build near 1.0,
                              # and the rates are averaged over the shards (the records carry no shard id),
                              # so a hotter shard sits above them (at 1.25, bursts broke the SLO in the bench)
RATE_QUANTILES = (0.1, 1.0)   # slot arrival-rate quantiles the SLO must hold at (the busiest slot: a day
                              # gives 6 slots per hour, and a burst hour's p90 of them was exceeded the next day)
NOW_SLOTS = 3                  # "now" = the arrival rates of the newest 3 slots (half an hour)
PROFILE_TOLERANCE = 1.5        # now follows the daily profile while within x1.5 of what its hours saw before
                               # (a slot's rate varies about x1.3 around its hour's; a holiday's would not)
DECISION_SECONDS = 3600        # a decision stays in force until the next retrain (retrainSchedule rate(1 hour))
NEXT_HOUR_GRACE = 300          # ... the next hour of the day counts when the decision runs > 5 min into it
POLL_INTERVAL_S = 1.0          # Lambda polls an idle shard once per second
LAMBDA_OVERHEAD_S = 0.02       # invoke overhead between two process_stream invocations of a shard (estimate)


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
    window; these read 5-15 % high with no window and 2-5 % low with a 1 s window, against the arrivals.) A batch
    counts in the slot its oldest event arrived in, not the one it was recorded in: a backlog after a burst is
    recorded late, and would put the burst's rate into the quiet hour after it."""
    slots: dict[float, np.ndarray] = {}
    for r in records:
        rate, events = float(r.get("arrival_rate") or 0.0), int(r["events"])
        if rate > 0:
            start = arrived_at(r) // SLOT_SECONDS * SLOT_SECONDS
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


def _hour_history(history: list[tuple[float, int, float, int]], hour: int) -> list[tuple[float, int, float, int]]:
    """The slots of ``history`` at ``hour`` of the day, or none when they hold fewer than MIN_RECORDS records."""
    rows = [s for s in history if s[1] == hour]
    return rows if sum(s[3] for s in rows) >= MIN_RECORDS else []


def follows_profile(records: list[dict]) -> bool:
    """Whether the load now follows the daily profile: each of the newest NOW_SLOTS slots' rate is within
    PROFILE_TOLERANCE of the range of the older slots at its hour of the day (which must hold MIN_RECORDS)."""
    slots = slot_rates(records)
    recent, history = slots[-NOW_SLOTS:], slots[:-NOW_SLOTS]
    for _, hour, rate, _ in recent:
        seen = [s[2] for s in _hour_history(history, hour)]
        if not seen or not min(seen) / PROFILE_TOLERANCE <= rate <= max(seen) * PROFILE_TOLERANCE:
            return False
    return bool(recent)


def keep_up_only(records: list[dict], rates: dict[str, float]) -> set[str]:
    """The scenarios the setting need only keep up at, not hold the SLO at: "now" while the load follows the daily
    profile and the hours ahead have a history. The history of those hours then forecasts the hour the decision
    is in force for better than the last half hour does, which at a step of the profile is the hour before's load
    (in bench.cost_optimizer, at 7h and at 12h and 19h, holding the SLO at both loads left only settings with no
    window: a batch per process_stream call, 4 events where a 1 s window gathers 20). Keeping up at now still
    guards against a load the forecast does not expect."""
    now_names = {name for name in rates if name.startswith("now ")}
    return now_names if len(now_names) < len(rates) and follows_profile(records) else set()


def rate_scenarios(records: list[dict], now: float) -> dict[str, float]:
    """The arrival rates per shard the setting must hold the SLO at until the next retrain: the RATE_QUANTILES of
    the slot rates now (the newest NOW_SLOTS slots) and of the hours of the day it will be in force for (every
    older slot of those hours in the history: the daily profile, once there is a day of records)."""
    slots = slot_rates(records)
    recent, history = slots[-NOW_SLOTS:], slots[:-NOW_SLOTS]
    groups = {"now": recent}
    for i, hour in enumerate(decision_hours(now)):
        rows = _hour_history(history, hour)
        if rows:
            groups["this hour" if i == 0 else "next hour"] = rows
    rates = {}
    for name, rows in groups.items():
        values = np.asarray([s[2] for s in rows])
        for q in RATE_QUANTILES:
            rates[f"{name} p{int(100 * q)}"] = float(np.quantile(values, q)) if len(values) else 0.0
    return rates
