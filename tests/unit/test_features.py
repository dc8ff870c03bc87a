import random

import pytest
from hypothesis import given, settings, strategies as st

import feature_oracle
from pipeline.events import Event
from pipeline.features import (DAY, FEATURE_NAMES, FEATURE_SETS, FeatureSetError, FeatureState, named,
                               retention_seconds)

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
            state = FeatureState.from_json(state.to_json(), feature_set)
        observed = state.observe(Event.model_validate(raw))
        assert observed.late == expected[raw["event_id"]]["late"]
        if not observed.late:
            _assert_equal(named(observed.features, feature_set), expected[raw["event_id"]]["features"], str(i))
    assert all(r[0] >= state.last_seen - retention_seconds(feature_set) for r in state.recent)


def test_v2_extends_v1():
    arrivals = _stream(seed=5, count=50, mean_gap=300)
    v1, v2 = FeatureState("v1"), FeatureState("v2")
    for raw in arrivals:
        event = Event.model_validate(raw)
        a, b = v1.add(event), v2.add(event)
        assert len(a) == 15 and len(b) == len(FEATURE_SETS["v2"]) == 25
        assert b[:15] == a


def test_vector_shape_and_first_event_defaults():
    features = FeatureState().add(Event.model_validate(_event(1, T0)))
    assert len(features) == len(FEATURE_NAMES) == 15
    assert named(features)["seconds_since_prev"] == 7 * DAY


def test_state_survives_serialisation_and_prunes_old_events():
    state = FeatureState()
    state.add(Event.model_validate(_event(1, T0)))
    state.add(Event.model_validate(_event(2, T0 + 2 * DAY)))
    restored = FeatureState.from_json(state.to_json())
    assert len(restored.recent) == 1 and restored.total_events == 2


def test_mismatched_feature_sets_fail_loudly():
    with pytest.raises(FeatureSetError, match="unknown feature set 'v9'"):
        FeatureState("v9")
    with pytest.raises(FeatureSetError, match="stored state is for feature set 'v1', not 'v2'"):
        FeatureState.from_json(FeatureState("v1").to_json(), "v2")
    with pytest.raises(FeatureSetError, match="has 25 features, got 15"):
        named([0.0] * 15, "v2")
