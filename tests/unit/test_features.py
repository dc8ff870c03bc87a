import random
import zlib

import pytest
from hypothesis import given, settings, strategies as st

import feature_oracle
from pipeline.events import Event
from pipeline.features import (DAY, FEATURE_NAMES, FEATURE_SETS, FeatureSetError, FeatureState, StaleColdState,
                               named, retention_seconds)

T0 = 1_700_000_000.0


def _event(n, ts, event_type="view", amount=None, device="mobile", user="u"):
    return {"event_id": f"e{n}", "user_id": user, "event_type": event_type, "timestamp": ts, "amount": amount,
            "device_type": device, "priority": "medium"}


def _stream(seed: int, count: int, mean_gap: float, late_every: int = 0) -> list[dict]:
    """Events in arrival order: ~5 % swapped with a neighbour (out of order) and, optionally, some held back
    by more than the allowed lateness (late)."""
    rng = random.Random(seed)
    ts, events = T0, []
    for n in range(count):
        ts += rng.expovariate(1 / mean_gap)
        kind = rng.choice(["view", "view", "click", "add_to_cart", "purchase", "login"])
        events.append(_event(n, ts, kind, amount=round(rng.uniform(1, 50), 2) if kind == "purchase" else None,
                             device=rng.choice(["mobile", "desktop", None])))
    arrival = events[:]
    for i in range(0, len(arrival) - 1):
        if rng.random() < 0.05:
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    if late_every:
        for i in range(late_every, len(arrival) - 40, late_every):  # re-insert it 40 arrivals later
            arrival.insert(i + 40, arrival.pop(i))
    return arrival


def _round_trip(state: FeatureState, feature_set: str) -> FeatureState:
    """Through storage, as process_stream does between batches (hot part always, cold part when it changed)."""
    state.mark_stored()
    return FeatureState.from_bytes(state.to_bytes(), state.cold_bytes(), feature_set)


def _assert_equal(got: dict, expected: dict, where: str) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, where)


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_every_feature_matches_the_brute_force_oracle(feature_set):
    arrivals = _stream(seed=3, count=600, mean_gap=900, late_every=97)
    expected = feature_oracle.replay(arrivals, feature_set)
    state = FeatureState(feature_set)
    late = 0
    for raw in arrivals:
        observed = state.observe(Event.model_validate(raw))
        truth = expected[raw["event_id"]]
        assert observed.late == truth["late"], raw["event_id"]
        late += observed.late
        if not truth["late"]:
            _assert_equal(named(observed.features, feature_set), truth["features"], raw["event_id"])
    assert late > 0 and state.late_events == late  # late events were exercised, counted and kept out of state


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10 * DAY, allow_nan=False), st.sampled_from(["view", "click", "purchase"]),
                          st.floats(0, 1000, allow_nan=False)), min_size=1, max_size=40),
       st.sampled_from(list(FEATURE_SETS)))
def test_window_logic_property(rows, feature_set):
    """Any arrival order, any gaps (including ties and events far apart): state == oracle for on-time events,
    and a round trip through JSON in the middle changes nothing."""
    arrivals = [_event(n, T0 + offset, kind, amount=amount if kind == "purchase" else None)
                for n, (offset, kind, amount) in enumerate(rows)]
    expected = feature_oracle.replay(arrivals, feature_set)
    state = FeatureState(feature_set)
    for i, raw in enumerate(arrivals):
        if i == len(arrivals) // 2:
            state = _round_trip(state, feature_set)
        observed = state.observe(Event.model_validate(raw))
        assert observed.late == expected[raw["event_id"]]["late"]
        if not observed.late:
            _assert_equal(named(observed.features, feature_set), expected[raw["event_id"]]["features"], str(i))
    assert all(h * 3600 >= state.last_seen - retention_seconds(feature_set) - 3600 for h in state.hours)


def test_v2_extends_v1():
    arrivals = _stream(seed=5, count=50, mean_gap=300)
    v1, v2 = FeatureState("v1"), FeatureState("v2")
    for raw in arrivals:
        event = Event.model_validate(raw)
        a, b = v1.add(event), v2.add(event)
        assert len(a) == 15 and len(b) == len(FEATURE_SETS["v2"]) == 25
        assert b[:15] == a


def test_vector_shape_and_first_event_defaults():
    assert FeatureState().last_seen == 0.0                           # nothing seen yet
    features = FeatureState().add(Event.model_validate(_event(1, T0)))
    assert len(features) == len(FEATURE_NAMES) == 15
    assert named(features)["seconds_since_prev"] == 7 * DAY


def test_state_survives_serialisation_and_prunes_old_tiles():
    state = FeatureState()
    state.add(Event.model_validate(_event(1, T0)))
    state.add(Event.model_validate(_event(2, T0 + 3 * 3600)))  # the first event's hour is rolled up
    assert len(state.hours) == 1 and len(state.fine_keys) == 1
    state.add(Event.model_validate(_event(3, T0 + 2 * DAY)))  # both fall out of the 24 h retention
    restored = _round_trip(state, "v1")
    assert len(restored.hours) == 0 and len(restored.fine_keys) == 1 and restored.total_events == 3
    assert restored.latest == state.latest


def test_a_stale_cold_part_is_detected():
    state = FeatureState("v2")
    state.add(Event.model_validate(_event(1, T0)))
    state.mark_stored()
    old_cold = state.cold_bytes()
    state.add(Event.model_validate(_event(2, T0 + 4 * 3600)))  # rolls the first hour up: a new cold version
    assert state.mark_stored() and state.cold_version == 1
    with pytest.raises(StaleColdState, match="^cold tiles version 0, the hot state needs 1$"):
        FeatureState.from_bytes(state.to_bytes(), old_cold, "v2")
    with pytest.raises(StaleColdState, match="^the hot state names cold tiles version 1 but none were read$"):
        FeatureState.from_bytes(state.to_bytes(), None, "v2")
    cold_1 = state.cold_bytes()
    state.add(Event.model_validate(_event(3, T0 + 8 * 3600)))  # another roll-up: each change has its own version
    assert state.mark_stored() and state.cold_version == 2
    with pytest.raises(StaleColdState):
        FeatureState.from_bytes(state.to_bytes(), cold_1, "v2")


def test_mismatched_feature_sets_fail_loudly():
    with pytest.raises(FeatureSetError, match="^unknown feature set 'v9'; known: v1, v2$"):
        FeatureState("v9")
    unknown = bytearray(zlib.decompress(FeatureState("v1").to_bytes()))
    unknown[1] = 7                                                   # a feature set code no version wrote
    with pytest.raises(FeatureSetError, match="^stored state is for feature set 7, not 'v1'$"):
        FeatureState.from_bytes(zlib.compress(bytes(unknown)), None, "v1")
    with pytest.raises(FeatureSetError, match="stored state is for feature set 'v1', not 'v2'"):
        FeatureState.from_bytes(FeatureState("v1").to_bytes(), None, "v2")
    with pytest.raises(FeatureSetError, match="has 25 features, got 15"):
        named([0.0] * 15, "v2")
    with pytest.raises(FeatureSetError, match="no feature set has 3 features"):
        named([0.0] * 3)


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_grid_aligned_times_hit_every_boundary_exactly(feature_set):
    """Times on the 5-minute grid and exactly a session gap, a window or the lateness apart: each boundary of
    the definition (window start tile, own tile, session gap, lateness, seconds_since_prev) is met with a tie."""
    grid = 300.0
    offsets = [0, grid, 2 * grid, 8 * grid, 14 * grid, 26 * grid, 12 * grid, 38 * grid, 50 * grid, 62 * grid,
               40 * grid, 74 * grid, 86 * grid, 98 * grid, 85 * grid, 110 * grid, 288 * grid, 299 * grid,
               300 * grid, 312 * grid, 313 * grid, 320 * grid, 2016 * grid, 2017 * grid, 2030 * grid]
    kinds = ["view", "purchase", "click", "view", "add_to_cart"]
    arrivals = [_event(n, T0 - T0 % 3600 + off, kinds[n % 5], amount=2.5 if kinds[n % 5] == "purchase" else None,
                       device=["mobile", "desktop", None][n % 3]) for n, off in enumerate(offsets)]
    expected = feature_oracle.replay(arrivals, feature_set)
    state = FeatureState(feature_set)
    for raw in arrivals:
        observed = state.observe(Event.model_validate(raw))
        assert observed.late == expected[raw["event_id"]]["late"], raw["event_id"]
        if not observed.late:
            _assert_equal(named(observed.features, feature_set), expected[raw["event_id"]]["features"],
                          raw["event_id"])
        state = _round_trip(state, feature_set)
    assert any(e["late"] for e in expected.values())


@pytest.mark.parametrize("events_per_day", [10, 1_000, 100_000])
def test_state_is_bounded_whatever_the_activity(events_per_day):
    """v2, a week and a day of steady activity: the stored state stays under 8 KB (hot + cold parts) and the hot
    part, rewritten on every batch, under 1 KB."""
    rng = random.Random(7)
    state = FeatureState("v2")
    gap = 86_400 / events_per_day
    count = min(int(8 * events_per_day), 120_000)
    ts = T0
    for n in range(count):
        ts += gap if events_per_day <= 1_000 else rng.expovariate(1 / gap)
        state.add(Event.model_validate(_event(n, ts, rng.choice(["view", "click", "purchase"]), amount=3.0,
                                              device=rng.choice(["mobile", "desktop"]))))
    state.mark_stored()
    hot, cold = state.to_bytes(), state.cold_bytes()
    assert len(hot) + len(cold) <= 8 * 1024, (len(hot), len(cold))
    assert len(hot) <= 1024, len(hot)


def test_a_session_hours_long_counts_every_event_through_the_hourly_tiles():
    """Events 20 minutes apart for 10 hours form one session (after a lone event two hours before): the newest
    event's session reaches back through every hourly tile the older ones were rolled up into, tile by tile, and
    stops at the gap."""
    state = FeatureState("v2")
    state.add(Event.model_validate(_event(99, T0 - 7200)))
    for n in range(31):
        vector = named(state.add(Event.model_validate(_event(n, T0 + n * 1200))), "v2")
    assert len(state.hours) >= 5
    assert (vector["session_events"], vector["session_seconds"], vector["sessions_24h"]) == (31, 30 * 1200, 2)
