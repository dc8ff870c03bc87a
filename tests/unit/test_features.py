import random

from pipeline.events import Event
from pipeline.features import DAY, FEATURE_NAMES, HOUR, FeatureState, named


def _event(n, ts, event_type="view", amount=None, device="mobile"):
    return Event(event_id=f"e{n}", user_id="u", event_type=event_type, timestamp=ts, amount=amount,
                 device_type=device)


def brute_force(history, event):
    """Recompute the windowed counts from the full list of events (the oracle)."""
    window = [e for e in history if event.timestamp - DAY < e.timestamp <= event.timestamp]
    hour = [e for e in history if event.timestamp - HOUR < e.timestamp <= event.timestamp]
    purchases = [e for e in window if e.event_type == "purchase"]
    views = [e for e in window if e.event_type == "view"]
    return {"events_1h": len(hour), "events_24h": len(window), "purchases_24h": len(purchases),
            "views_24h": len(views), "amount_sum_24h": sum(e.amount or 0 for e in purchases)}


def test_windows_match_a_brute_force_oracle_in_and_out_of_order():
    rng = random.Random(3)
    events = []
    ts = 1_700_000_000.0
    for n in range(400):
        ts += rng.expovariate(1 / 600)
        kind = rng.choice(["view", "view", "click", "purchase"])
        events.append(_event(n, ts, kind, amount=round(rng.uniform(1, 50), 2) if kind == "purchase" else None))
    arrival = events[:]
    for i in range(0, len(arrival) - 1, 7):  # swap neighbours: out-of-order arrival
        arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    state = FeatureState()
    seen = []
    for event in arrival:
        seen.append(event)
        got = named(state.add(event))
        expected = brute_force(seen, event)
        for name, value in expected.items():
            assert abs(got[name] - value) < 1e-6, (name, event.event_id)


def test_vector_shape_and_first_event_defaults():
    features = FeatureState().add(_event(1, 1_700_000_000.0))
    assert len(features) == len(FEATURE_NAMES) == 15
    assert named(features)["seconds_since_prev"] == 7 * DAY


def test_state_survives_serialisation_and_prunes_old_events():
    state = FeatureState()
    state.add(_event(1, 1_700_000_000.0))
    state.add(_event(2, 1_700_000_000.0 + 2 * DAY))
    restored = FeatureState.from_json(state.to_json())
    assert len(restored.recent) == 1 and restored.total_events == 2
