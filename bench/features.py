"""Streaming features per event and per-user state size, across user activity, for each feature set.

    python -m bench.features [--days 8] [--max-events 300000] [--repeats 3] [--levels]

For each feature set and activity (events per user per day, Poisson arrivals, ~5 % swapped with a neighbour so
some arrive out of order), one user's events go through ``FeatureState.observe`` for ``--days`` days of event
time (capped at ``--max-events``): CPU µs per event (median of ``--repeats`` passes over the last half, when the
state is at steady size), the stored state at the end (hot part: rewritten on every batch; cold part: hourly
tiles, rewritten when they roll up) and the bytes written per batch for the user, with 1-second batches: the hot
part every batch that holds the user's events, the cold part only when it changed. Goals (issue 10): <= 30 µs per
event at every activity, <= 8 KB stored per user for v2, <= 1 KB written per batch on average.

``--levels``: for the state at the end of each run, the stored size of the hot and cold parts with no compression,
zlib level 1 (what is stored) and level 6 (what was stored up to commit d944b30), and the CPU to compress and
decompress each.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from pipeline.events import Event  # noqa: E402
from pipeline.features import FEATURE_SETS, FeatureState  # noqa: E402
from scripts.progress import tracked  # noqa: E402

T0 = 1_700_000_000.0
ACTIVITIES = (10, 1_000, 100_000)


def user_events(per_day: float, days: float, max_events: int, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    gap, ts, raw = 86_400 / per_day, T0, []
    for n in range(min(int(per_day * days), max_events)):
        ts += rng.expovariate(1 / gap)
        kind = rng.choice(["view", "view", "click", "add_to_cart", "purchase"])
        raw.append({"event_id": f"e{n}", "user_id": "u", "event_type": kind, "timestamp": ts,
                    "amount": round(rng.uniform(1, 80), 2) if kind == "purchase" else None,
                    "device_type": rng.choice(["mobile", "desktop", "tablet"])})
    for i in range(len(raw) - 1):
        if rng.random() < 0.05:
            raw[i], raw[i + 1] = raw[i + 1], raw[i]
    return [Event.model_validate(r) for r in raw]


def measure(feature_set: str, per_day: float, days: float, max_events: int, repeats: int) -> dict:
    events = user_events(per_day, days, max_events)
    half = len(events) // 2
    warm = FeatureState(feature_set)
    for event in events[:half]:
        warm.observe(event)
    warm.mark_stored()
    hot, cold = warm.to_bytes(), warm.cold_bytes()
    timings = []
    measured = max(1, len(events) - half)
    for _ in range(max(repeats, -(-2_000 // measured))):  # the same second half from the same warm state
        state = FeatureState.from_bytes(hot, cold, feature_set)
        started = time.process_time()
        for event in events[half:]:
            state.observe(event)
        timings.append((time.process_time() - started) / measured * 1e6)
    # per 1-second batch that holds the user's events (second half, replayed batch by batch, as process_stream
    # does): the bytes written (the hot part, the cold part when it changed) and the CPU to store the state and
    # to read it back (from_bytes of both parts) for the next batch
    state = FeatureState.from_bytes(hot, cold, feature_set)
    written = batches = store_s = load_s = 0
    second = None
    for event in events[half:]:
        current = int(event.timestamp)
        if second is not None and current != second:
            state, cold, size, store, load = _round_trip(state, cold)
            written, store_s, load_s, batches = written + size, store_s + store, load_s + load, batches + 1
        second = current
        state.observe(event)
    state, cold, size, store, load = _round_trip(state, cold)
    written, store_s, load_s, batches = written + size, store_s + store, load_s + load, batches + 1
    return {"feature_set": feature_set, "events_per_day": per_day, "events": len(events),
            "us_per_event": statistics.median(timings), "hot_bytes": len(state.to_bytes()),
            "cold_bytes": len(state.cold_bytes()), "bytes_written_per_batch": written / batches,
            "store_us_per_batch": store_s / batches * 1e6, "load_us_per_batch": load_s / batches * 1e6,
            "fine_tiles": len(state.fine_keys), "hourly_tiles": len(state.hours)}


def _round_trip(state: FeatureState, cold: bytes) -> tuple[FeatureState, bytes, int, float, float]:
    """Store the state as a batch ends and read it back as the next one starts: (the state read back, the stored
    cold part, bytes written, CPU seconds to store, CPU seconds to read)."""
    started = time.process_time()
    cold_changed = state.mark_stored()
    hot = state.to_bytes()
    if cold_changed:
        cold = state.cold_bytes()
    stored = time.process_time()
    loaded = FeatureState.from_bytes(hot, cold, state.feature_set)
    done = time.process_time()
    return loaded, cold, len(hot) + (len(cold) if cold_changed else 0), stored - started, done - stored


def levels(feature_set: str, per_day: float, days: float, max_events: int) -> list[str]:
    """The stored parts of the state at the end of the run: bytes and CPU µs (compress, decompress) per level."""
    state = FeatureState(feature_set)
    for event in user_events(per_day, days, max_events):
        state.observe(event)
    state.mark_stored()
    cells = []
    for blob in (state.to_bytes(), state.cold_bytes()):
        body = zlib.decompress(blob)   # what to_bytes / cold_bytes compress
        cells.append(f"{len(body):>6}")
        for level in (1, 6):
            packed = zlib.compress(body, level)
            pack_us = _cpu_us(lambda: zlib.compress(body, level))   # noqa: B023 (called at once)
            unpack_us = _cpu_us(lambda: zlib.decompress(packed))    # noqa: B023
            cells.append(f"{len(packed):>6} {pack_us:5.1f} {unpack_us:4.1f}")
    return cells


def _cpu_us(call, repeats: int = 200) -> float:
    started = time.process_time()
    for _ in range(repeats):
        call()
    return (time.process_time() - started) / repeats * 1e6


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=8.0)
    parser.add_argument("--max-events", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", action="store_true", help="compare zlib levels on the stored parts")
    args = parser.parse_args(argv)
    results = []
    print(f"{'set':4} {'events/day':>10} {'events':>8} {'µs/event':>9} {'hot B':>6} {'cold B':>7} "
          f"{'stored B':>9} {'B written/batch':>16} {'store µs/batch':>15} {'load µs/batch':>14}")
    sweep = [(feature_set, per_day) for feature_set in FEATURE_SETS for per_day in ACTIVITIES]
    for feature_set, per_day in tracked(sweep, "feature set x activity"):
        r = measure(feature_set, per_day, args.days, args.max_events, args.repeats)
        results.append(r)
        print(f"{feature_set:4} {per_day:>10,} {r['events']:>8,} {r['us_per_event']:>9.1f} {r['hot_bytes']:>6} "
              f"{r['cold_bytes']:>7} {r['hot_bytes'] + r['cold_bytes']:>9} {r['bytes_written_per_batch']:>16.0f} "
              f"{r['store_us_per_batch']:>15.1f} {r['load_us_per_batch']:>14.1f}",
              flush=True)
    slowest = max(r["us_per_event"] for r in results)
    fastest = min(r["us_per_event"] for r in results)
    print(f"slowest / fastest activity: {slowest / fastest:.2f} (flat = 1)")
    if args.levels:
        print("\nstored bytes, CPU µs to compress and to decompress, per zlib level (raw: not compressed)")
        print(f"{'set':4} {'events/day':>10} {'hot raw':>7} {'hot z1 B   µs   µs':>19} {'hot z6 B   µs   µs':>19} "
              f"{'cold raw':>8} {'cold z1 B   µs   µs':>20} {'cold z6 B   µs   µs':>20}")
        for feature_set, per_day in sweep:
            hot_raw, hot1, hot6, cold_raw, cold1, cold6 = levels(feature_set, per_day, args.days, args.max_events)
            print(f"{feature_set:4} {per_day:>10,} {hot_raw:>7} {hot1:>19} {hot6:>19} {cold_raw:>8} {cold1:>20} "
                  f"{cold6:>20}", flush=True)
    return results


if __name__ == "__main__":
    main()
