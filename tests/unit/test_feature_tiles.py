"""The structures behind the per-event speed of pipeline/features.py, against brute force over the tiles:
the prefix sums behind window counts and session breaks, the session found by one bisect, window starts computed
from the event's tile."""
import random
from bisect import bisect_left

import pytest

from pipeline.events import Event
from pipeline.features import (CLICKS, FIRST, GAPS, LAST, N, POINTS, PURCHASES, TAIL_FIRST, TAIL_N, VIEWS,
                               WINDOW_1H, WINDOW_6H, WINDOW_7D, WINDOW_24H, FeatureState, named)

T0 = 1_700_000_000.0
COUNTS = (N, PURCHASES, VIEWS, CLICKS, POINTS)   # the columns with prefix sums
GAP_MS = 30 * 60 * 1000
PER_HOUR = 12


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


def _brute_breaks(cols: list[list], j: int) -> int:
    """Session breaks of tile j (j >= 1): the gaps inside it and 1 for a gap between it and the tile before."""
    return cols[GAPS][j] + (cols[FIRST][j] - cols[LAST][j - 1] >= GAP_MS)


def _brute_session(cols: list[list], own: int, lo: int) -> tuple:
    """The session below tile ``own`` walked tile by tile, and the session gaps of the tiles lo..own."""
    first, last, n = cols[FIRST], cols[LAST], cols[N]
    window_gaps = sum(_brute_breaks(cols, j) for j in range(lo + 1, own + 1)) + (cols[GAPS][lo] if lo < own else 0)
    below_n, chain_first, j = 0, None, own
    while j > 0 and first[j] - last[j - 1] < GAP_MS:
        j -= 1
        if cols[GAPS][j]:   # the session starts inside tile j: its tail
            below_n, chain_first = below_n + cols[TAIL_N][j], cols[TAIL_FIRST][j]
            break
        below_n, chain_first = below_n + n[j], first[j]
    return below_n, chain_first, window_gaps


@pytest.mark.parametrize("mean_gap", [40, 700, 5000])
def test_prefix_sums_match_brute_force(mean_gap):
    """After every event (so through roll-ups and merged hours, out-of-order and late events, evicted hourly tiles
    and a storage round trip now and then), the prefix sums up to any tile give the counts and the session breaks of
    every range of tiles."""
    state, checked = FeatureState("v2"), 0
    rng = random.Random(mean_gap)
    for i, event in enumerate(_events(seed=mean_gap, count=700, mean_gap=mean_gap)):
        state.observe(event)
        if i % 97 == 96:
            state.mark_stored()
            state = FeatureState.from_bytes(state.to_bytes(), state.cold_bytes(), "v2")
        tiles = state.tiles
        cols, size = tiles.cols, len(tiles)
        upto = rng.choice([size - 1, size, rng.randint(0, size)])   # the newest tile open, or any
        sums = tiles.prefix(upto)
        for lo in {0, 1, upto // 3, upto // 2, upto - 1}:
            if 0 <= lo < upto:
                assert {c: sums[c][upto] - sums[c][lo] for c in COUNTS} == {
                    c: sum(cols[c][lo:upto]) for c in COUNTS}, (i, lo, upto)
                if lo:   # the first tile's breaks may count a gap before it, to a tile since dropped
                    assert sums[-1][upto] - sums[-1][lo] == sum(_brute_breaks(cols, j) for j in range(lo, upto))
                checked += 1
    assert checked > 1000 and state.hours


@pytest.mark.parametrize("mean_gap", [60, 900, 4000])
def test_session_below_matches_a_walk_tile_by_tile(mean_gap):
    state, checked = FeatureState("v2"), 0
    for event in _events(seed=mean_gap + 1, count=500, mean_gap=mean_gap):
        state.observe(event)
        tiles = state.tiles
        for own in range(tiles.cold, len(tiles)):   # an event's own tile is a 5-minute tile
            end = tiles.keys[own]
            lo = bisect_left(tiles.keys, end // PER_HOUR * PER_HOUR - 24 * PER_HOUR, 0, own)
            assert state._session_below(end, own) == _brute_session(tiles.cols, own, lo), own
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


def test_sessions_that_reach_the_oldest_tile_kept():
    """Sessions that go back to the oldest tile: one that starts inside it (an hourly tile with a gap inside: the
    session is its tail, not all of it), then, events 20 minutes apart for 8 days, one longer than the retention
    (the oldest tiles are dropped as new ones come, their prefix sums kept offset): each checked against the walk."""
    hour = int(T0) // 3600 * 3600
    times = [hour, hour + 60] + [hour + 36 * 60 + k * 1200 for k in range(8 * 72)]   # a 35-minute gap at 00:01
    state, from_tail, past_retention = FeatureState("v2"), 0, 0
    for n, ts in enumerate(times):
        vector = named(state.add(Event.model_validate({"event_id": f"e{n}", "user_id": "u", "event_type": "view",
                                                       "timestamp": ts})), "v2")
        tiles = state.tiles
        own = len(tiles) - 1
        end = tiles.keys[own]
        lo = bisect_left(tiles.keys, end // PER_HOUR * PER_HOUR - 24 * PER_HOUR, 0, own)
        assert state._session_below(end, own) == _brute_session(tiles.cols, own, lo), n
        if state.hours and state.hours[0] == hour // 3600 and tiles.cols[GAPS][0]:
            assert (vector["session_events"], vector["session_seconds"]) == (n - 1, ts - times[2]), n
            from_tail += 1
        past_retention += bool(state.hours) and state.hours[0] > hour // 3600 + 1
    assert from_tail > 50 and past_retention > 50
