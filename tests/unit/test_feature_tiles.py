"""The structures behind the per-event speed of pipeline/features.py, against brute force over the tiles:
cached and running window sums, the memoised session chain, window starts computed from the event's tile."""
import random
from functools import reduce
from operator import or_

import pytest

from pipeline.events import Event
from pipeline.features import (AMOUNT, CLICKS, DEVICES, FIRST, GAPS, LAST, N, POINTS, PURCHASES, VIEWS, WINDOW_1H,
                               WINDOW_6H, WINDOW_7D, WINDOW_24H, FeatureState)

T0 = 1_700_000_000.0
ALL_SUMS = (N, PURCHASES, VIEWS, CLICKS, AMOUNT, POINTS, DEVICES)  # the columns _Tier.sums adds up, in its order
GAP_MS = 30 * 60 * 1000


def _events(seed: int, count: int, mean_gap: float) -> list[Event]:
    """Poisson arrivals, some swapped (out of order), some held back past the lateness (late), bursts and gaps
    long enough to roll tiles up and evict hourly tiles."""
    rng = random.Random(seed)
    ts, raw = T0, []
    for n in range(count):
        ts += rng.expovariate(1 / mean_gap) if rng.random() < 0.95 else rng.uniform(3600, 2 * 86_400)
        kind = rng.choice(["view", "click", "purchase", "add_to_cart", "login"])
        raw.append({"event_id": f"e{n}", "user_id": "u", "event_type": kind, "timestamp": round(ts, 3),
                    "amount": round(rng.uniform(1, 90), 2) if kind == "purchase" else None,
                    "device_type": rng.choice(["mobile", "desktop", "tablet", None])})
    for i in range(len(raw) - 1):
        if rng.random() < 0.1:
            raw[i], raw[i + 1] = raw[i + 1], raw[i]
    for i in range(30, len(raw) - 40, 70):
        raw.insert(i + 35, raw.pop(i))
    return [Event.model_validate(r) for r in raw]


def _brute_sums(tier, lo: int, hi: int) -> tuple:
    return tuple(reduce(or_, tier.cols[c][lo:hi], 0) if c == DEVICES else sum(tier.cols[c][lo:hi])
                 for c in ALL_SUMS)


def _brute_walk(tier, top: int, lo: int) -> tuple:
    """The session walk down from fine tile ``top``, tile by tile (as the first tiled revision did it)."""
    first, last, n = tier.cols[FIRST], tier.cols[LAST], tier.cols[N]
    chain_n, chain_first, in_session, gaps = n[top], first[top], True, 0
    for i in range(top - 1, -1, -1):
        apart = first[i + 1] - last[i] >= GAP_MS
        gaps += apart and i >= lo
        if in_session and apart:
            in_session = False
        elif in_session:
            chain_n, chain_first = chain_n + n[i], first[i]
    return chain_n, chain_first, in_session, gaps


@pytest.mark.parametrize("mean_gap", [40, 700, 5000])
def test_cached_and_running_window_sums_match_brute_force(mean_gap):
    """After every event (so through roll-ups, out-of-order and late events, evicted hourly tiles and a storage
    round trip now and then), every window sum a tier serves, cached or not, equals the sum over its tiles."""
    state, checked = FeatureState("v2"), 0
    for i, event in enumerate(_events(seed=mean_gap, count=700, mean_gap=mean_gap)):
        state.observe(event)
        if i % 97 == 96:
            state.mark_stored()
            state = FeatureState.from_bytes(state.to_bytes(), state.cold_bytes(), "v2")
        for tier in (state.hourly, state.fine):
            size = len(tier)
            newest = size if tier is state.hourly else size - 1  # the newest fine tile is open: never summed
            for lo, hi in {(0, newest), (size // 3, newest), (size // 2, max(size // 2, newest - 1)),
                           (newest - 1, newest)}:
                if 0 <= lo < hi:
                    if tier is state.fine:
                        assert tier.sums(lo, hi) == _brute_sums(tier, lo, hi), (i, lo, hi)
                    else:   # the hourly tier's windows: differences of its running sums (counts, session gaps)
                        running = tier.running()
                        assert set(running) == {N, PURCHASES, VIEWS, CLICKS, POINTS, GAPS}
                        assert {c: running[c][hi] - running[c][lo] for c in running} == {
                            c: sum(tier.cols[c][lo:hi]) for c in running}, (i, lo, hi)
                    checked += 1
    assert checked > 1000 and len(state.hourly) > 0


@pytest.mark.parametrize("mean_gap", [60, 900])
def test_memoised_session_chain_matches_a_walk_tile_by_tile(mean_gap):
    state, checked = FeatureState("v2"), 0
    for event in _events(seed=mean_gap + 1, count=500, mean_gap=mean_gap):
        state.observe(event)
        fine = state.fine
        for top in range(len(fine) - 1):   # the open, newest tile is never walked from
            for lo in (0, top // 2, top, top + 1):
                assert fine.walk_down(top, lo) == _brute_walk(fine, top, lo), (top, lo)
                checked += 1
    assert checked > 1000


def _window_start_fine(ts_ms: int, window: tuple[int, int]) -> int:
    """The first 5-minute tile of a window as features.py defines it: floor(ts - w, r), as a fine tile index."""
    width, resolution = window[0] * 1000, window[1] * 1000
    return (ts_ms - width) // resolution * resolution // 300_000


@pytest.mark.parametrize("window", [WINDOW_1H, WINDOW_6H, WINDOW_24H, WINDOW_7D])
def test_window_start_from_the_event_tile_is_floor_of_ts_minus_w(window):
    """Windows are looked up once per 5-minute tile (FeatureState._window_sums computes the starts from the
    event's tile): that needs floor(ts - w, r) to be the same for every time in the tile, including its first and
    last millisecond and times on the hour."""
    fine_ms = 300_000
    hour = int(T0) // 3600 * 3600 * 1000
    for tile_start in (hour, hour + fine_ms, hour + 11 * fine_ms, hour - fine_ms, hour + 86_400_000):
        expected = _window_start_fine(tile_start, window)
        for ts_ms in (tile_start, tile_start + 1, tile_start + fine_ms // 2, tile_start + fine_ms - 1):
            assert _window_start_fine(ts_ms, window) == expected, (ts_ms, window)


@pytest.mark.parametrize("feature_set", ["v1", "v2"])
def test_roll_up_moves_only_when_the_newest_tile_does(feature_set):
    """observe rolls tiles up only when the newest event time enters a new 5-minute tile: that needs the fine
    tiles' reach and the retention to be whole tiles (and the retention whole hours)."""
    from pipeline import features
    assert features._FINE_KEEP_MS % features._FINE_MS == 0
    assert int(features.retention_seconds(feature_set) * 1000) % features._HOUR_MS == 0
