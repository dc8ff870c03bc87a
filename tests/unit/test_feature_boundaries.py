"""Features on exact boundaries: grid-aligned times (tile edges, window starts, the 30-minute session gap, the 1 h
lateness limit, the longest window) put events ON each boundary and 1 ms either side of it, where random float
offsets never land. Checked against the brute-force oracle (tests/unit/feature_oracle.py) and, for the main
boundaries, against values written out by hand."""
import math
import random

import feature_oracle
import pytest

from pipeline.events import Event
from pipeline.features import FEATURE_SETS, FeatureState, named

T0 = 1_700_000_400.0  # 2023-11-14T22:20:00Z: a multiple of 5 minutes, 20 minutes into an hour
MS = 0.001
GAPS = (0.0, MS, 60.0, 300.0 - MS, 300.0, 300.0 + MS, 1800.0 - MS, 1800.0, 1800.0 + MS, 3600.0 - MS, 3600.0,
        3600.0 + MS, 2 * 3600.0, 6 * 3600.0, 86400.0 - MS, 86400.0, 86400.0 + MS)
BACK = (MS, 300.0, 1800.0, 3600.0 - MS, 3600.0, 3600.0 + MS, 4000.0)   # how far behind the newest an event arrives


def _event(n, ts, event_type="view", amount=None, device="mobile"):
    return {"event_id": f"e{n}", "user_id": "u", "event_type": event_type, "timestamp": ts, "amount": amount,
            "device_type": device, "priority": "high"}


def _grid_stream(seed: int, count: int) -> list[dict]:
    """Arrivals whose gaps are boundary values; some arrive behind the newest by a boundary value."""
    rng = random.Random(seed)
    newest, events = T0, []
    for n in range(count):
        if n and rng.random() < 0.2:
            ts = newest - rng.choice(BACK)
        else:
            newest += rng.choice(GAPS)
            ts = newest
        kind = rng.choice(["view", "click", "purchase", "add_to_cart", "login"])
        events.append(_event(n, round(ts, 3), kind, amount=float(rng.randint(1, 9)) if kind == "purchase" else None,
                             device=rng.choice(["mobile", "tablet", None])))
    return events


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grid_aligned_streams_match_the_oracle(feature_set, seed):
    arrivals = _grid_stream(seed, 160)
    expected = feature_oracle.replay(arrivals, feature_set)
    state = FeatureState(feature_set)
    for i, raw in enumerate(arrivals):
        if i % 7 == 3:  # through storage, as process_stream does between batches
            state.mark_stored()
            state = FeatureState.from_bytes(state.to_bytes(), state.cold_bytes(), feature_set)
        observed = state.observe(Event.model_validate(raw))
        truth = expected[raw["event_id"]]
        assert observed.late == truth["late"], (i, raw)
        if not truth["late"]:
            got = named(observed.features, feature_set)
            for name, value in truth["features"].items():
                assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, i, raw["timestamp"])
    assert state.late_events == sum(e["late"] for e in expected.values()) > 0


def _features(times, feature_set="v1", kinds=None):
    state = FeatureState(feature_set)
    out = []
    for n, ts in enumerate(times):
        observed = state.observe(Event.model_validate(_event(n, ts, (kinds or {}).get(n, "view"))))
        out.append((observed.late, named(observed.features, feature_set)))
    return state, out


def test_lateness_limit_is_exactly_one_hour_behind_the_newest():
    state, out = _features([T0 - 7200, T0, T0 - 3600, T0 - 3600 - MS])
    assert [late for late, _ in out] == [False, False, False, True]
    assert state.late_events == 1 and state.total_events == 3
    # a late event is scored on the tiles up to its own (T0 - 7200 and itself), as a session of its own
    _, late = out[3]
    assert late["events_24h"] == 2 and late["events_1h"] == 2 and late["seconds_since_prev"] == 0.0
    _, v2 = _features([T0, T0 - 3600 - MS], "v2")
    assert v2[1][0] and (v2[1][1]["session_events"], v2[1][1]["session_seconds"], v2[1][1]["sessions_24h"]) == (1, 0, 1)


def test_the_one_hour_window_starts_on_the_tile_an_hour_back():
    # T0 is on a tile edge: the window of an event at T0 starts at T0 - 3600 exactly
    _, on_edge = _features([T0 - 3600, T0])
    _, before_edge = _features([T0 - 3600 - MS, T0])
    assert on_edge[1][1]["events_1h"] == 2 and before_edge[1][1]["events_1h"] == 1
    assert on_edge[1][1]["events_24h"] == before_edge[1][1]["events_24h"] == 2


def test_the_24_hour_window_starts_on_the_hour_a_day_back():
    hour = 1_700_002_800.0  # 23:00:00Z, on an hour edge
    _, on_edge = _features([hour - 86400, hour])
    _, before_edge = _features([hour - 86400 - MS, hour])
    assert on_edge[1][1]["events_24h"] == 2 and before_edge[1][1]["events_24h"] == 1
    # the sawtooth: an event 24 h 59 min back still counts for an event at hh:59
    _, sawtooth = _features([hour - 86400, hour + 3540])
    assert sawtooth[1][1]["events_24h"] == 2


def test_seconds_since_prev_stops_at_the_longest_window():
    _, just_inside = _features([T0, T0 + 86400 - MS])
    _, at_limit = _features([T0, T0 + 86400])
    assert just_inside[1][1]["seconds_since_prev"] == pytest.approx(86400 - MS)
    assert at_limit[1][1]["seconds_since_prev"] == 7 * 86400
    _, v2 = _features([T0, T0 + 86400], "v2")
    assert v2[1][1]["seconds_since_prev"] == 86400
    _, out_of_order = _features([T0, T0 - 10])
    assert out_of_order[1][1]["seconds_since_prev"] == 0.0


def test_session_gap_of_exactly_30_minutes_starts_a_new_session():
    _, apart = _features([T0, T0 + 1800], "v2")
    _, together = _features([T0, T0 + 1800 - MS], "v2")
    assert (apart[1][1]["session_events"], apart[1][1]["session_seconds"], apart[1][1]["sessions_24h"]) == (1, 0, 2)
    assert (together[1][1]["session_events"], together[1][1]["sessions_24h"]) == (2, 1)
    assert together[1][1]["session_seconds"] == pytest.approx(1800 - MS)


def test_sessions_are_found_inside_rolled_up_hours():
    # three events a gap apart, then one 3 h later so the first hours roll up into hourly tiles
    times = [T0, T0 + 1800, T0 + 1800 + 1799, T0 + 3 * 3600, T0 + 3 * 3600 + 60]
    state, out = _features(times, "v2")
    assert len(state.hours) >= 1
    last = out[-1][1]
    assert (last["session_events"], last["session_seconds"], last["sessions_24h"]) == (2, 60, 3)
    _, chained = _features([T0 + k * 1700 for k in range(8)], "v2")  # every gap < 30 min: one long session
    assert (chained[-1][1]["session_events"], chained[-1][1]["sessions_24h"]) == (8, 1)
    assert chained[-1][1]["session_seconds"] == 7 * 1700


def test_calendar_features_on_day_edges():
    saturday = 1_700_265_600.0  # 2023-11-18T00:00:00Z
    cases = [(saturday - MS, 23.0, 0.0), (saturday, 0.0, 1.0), (saturday + 2 * 86400 - MS, 23.0, 1.0),
             (saturday + 2 * 86400, 0.0, 0.0)]
    for ts, hour, weekend in cases:
        _, out = _features([ts])
        assert (out[0][1]["hour_of_day"], out[0][1]["is_weekend"]) == (hour, weekend), ts


def test_engagement_and_purchase_figures_by_hand():
    state = FeatureState("v2")
    rows = [("view", None), ("click", None), ("add_to_cart", None), ("purchase", 10.0), ("purchase", 20.0),
            ("logout", None)]
    for n, (kind, amount) in enumerate(rows):
        vector = named(state.add(Event.model_validate(_event(n, T0 + n, kind, amount, device="desktop"))), "v2")
    points = 1 + 2 + 5 + 10 + 10 + 0
    assert vector["engagement_score_24h"] == pytest.approx(100 * (1 - 2.718281828459045 ** (-points / 50)))
    assert (vector["purchases_24h"], vector["amount_sum_24h"], vector["amount_avg_24h"]) == (2, 30.0, 15.0)
    assert (vector["views_24h"], vector["clicks_24h"], vector["purchase_view_ratio_24h"]) == (1, 1, 2.0)
    assert (vector["purchases_7d"], vector["amount_sum_7d"], vector["amount_avg_7d"]) == (2, 30.0, 15.0)
    assert (vector["event_type_code"], vector["device_code"], vector["priority_code"]) == (5, 1, 2)
    assert vector["distinct_devices_24h"] == 1 and vector["events_6h"] == vector["events_7d"] == 6


def test_the_cold_part_is_stored_only_when_it_changed():
    state, _ = _features([T0, T0 + 3 * 3600])          # the first hour rolls up: the cold part changed
    assert state.mark_stored() is True and state.cold_version == 1
    assert state.mark_stored() is False and state.cold_version == 1   # nothing changed since
    state.add(Event.model_validate(_event(9, T0 + 3 * 3600 + 60)))
    assert state.mark_stored() is False


@pytest.mark.parametrize("first_gap", [1800.0, 1800.0 - MS, 1400.0])
def test_a_session_reaching_back_through_rolled_up_hours_stops_at_an_exact_30_minute_gap(first_gap):
    """The newest event's session chains back through fine tiles into hourly tiles; the gap between the last event
    of hour 0 and the first of hour 1 is exactly 30 min (a new session), 1 ms less, or well under it."""
    hour = 1_700_002_800.0                       # on an hour edge
    b = hour + 4800                              # the first event of hour 1
    times = [b - first_gap, b] + [b + 1500 * k for k in range(1, 9)]   # hour 1 rolls up before the last
    arrivals = [_event(n, ts) for n, ts in enumerate(times)]
    expected = feature_oracle.replay(arrivals, "v2")
    state, out = _features(times, "v2")
    assert len(state.hours) == 2
    for n, (_, got) in enumerate(out):
        for name in ("session_events", "session_seconds", "sessions_24h"):
            assert got[name] == pytest.approx(expected[f"e{n}"]["features"][name]), (name, n)
    assert out[-1][1]["session_events"] == (9 if first_gap == 1800.0 else 10)


H0 = 1_699_999_200.0   # 2023-11-14T22:00:00Z, a Tuesday: on the hour


def _at(n, ts, event_type, device, amount=None):
    return Event.model_validate({"event_id": f"x{n}", "user_id": "u", "event_type": event_type, "timestamp": ts,
                                 "amount": amount, "device_type": device, "priority": "medium"})


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_a_late_events_vector_counts_it_in_every_window_of_the_tiles_as_they_are(feature_set):
    """A late event (more than the allowed lateness behind the newest) is kept out of the state; its vector is the
    tiles as they are up to its own tile, with the event itself counted in every window, seconds_since_prev 0 and
    a session of its own. Written out by hand: the 22:00 hour's two desktop events (a purchase of 10, a view) have
    been rolled up into an hourly tile by a view at 01:01; late events at 22:15, 22:20 and 22:25 each see that tile
    (the feature oracle has no definition for late events)."""
    state = FeatureState(feature_set)
    for n, (ts, kind, amount) in enumerate([(H0 + 60, "purchase", 10.0), (H0 + 600, "view", None),
                                            (H0 + 3 * 3600 + 60, "view", None)]):
        assert not state.observe(_at(n, ts, kind, "desktop", amount)).late
    assert state.hours == [int(H0 // 3600)] and len(state.fine_keys) == 1   # 22:00 rolled up, 01:00 fine
    v2 = feature_set == "v2"
    # (late event) -> {feature: value}: counts over the 22:00 tile + the event; devices: desktop + the event's
    cases = [
        (_at(10, H0 + 900, "purchase", "mobile", 5.0),     # a device code 0, new to the window
         {"purchases_24h": 2, "views_24h": 1, "amount_sum_24h": 15.0, "amount_avg_24h": 7.5, "event_type_code": 3,
          "amount": 5.0, "device_code": 0, "purchase_view_ratio_24h": 2.0, "distinct_devices_24h": 2,
          "purchases_7d": 2, "amount_sum_7d": 15.0, "amount_avg_7d": 7.5, "clicks_24h": 0, "points": 10 + 1 + 10}),
        (_at(11, H0 + 1200, "click", "tablet"),           # a device code 2
         {"purchases_24h": 1, "views_24h": 1, "amount_sum_24h": 10.0, "amount_avg_24h": 10.0, "event_type_code": 1,
          "amount": 0.0, "device_code": 2, "purchase_view_ratio_24h": 1.0, "distinct_devices_24h": 2,
          "purchases_7d": 1, "amount_sum_7d": 10.0, "amount_avg_7d": 10.0, "clicks_24h": 1, "points": 10 + 1 + 2}),
        (_at(12, H0 + 1500, "view", None),                # no device: nothing added to the devices
         {"purchases_24h": 1, "views_24h": 2, "amount_sum_24h": 10.0, "amount_avg_24h": 10.0, "event_type_code": 0,
          "amount": 0.0, "device_code": -1, "purchase_view_ratio_24h": 0.5, "distinct_devices_24h": 1,
          "purchases_7d": 1, "amount_sum_7d": 10.0, "amount_avg_7d": 10.0, "clicks_24h": 0, "points": 10 + 1 + 1}),
    ]
    for event, want in cases:
        observed = state.observe(event)
        assert observed.late
        got = named(observed.features, feature_set)
        expected = {"events_1h": 3, "events_24h": 3, "seconds_since_prev": 0, "hour_of_day": 22, "is_weekend": 0,
                    "priority_code": 1} | {k: v for k, v in want.items() if k in got}
        if v2:
            engagement = pytest.approx(100 * (1 - math.exp(-want["points"] / 50)))
            expected |= {"events_6h": 3, "events_7d": 3, "session_events": 1, "session_seconds": 0,
                         "sessions_24h": 1, "engagement_score_24h": engagement}
        assert {k: got[k] for k in expected} == expected, event.event_id
        assert set(expected) == set(got)   # every feature of the set checked
    assert state.late_events == 3 and state.total_events == 3   # none of them entered the state


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_a_late_events_windows_take_the_hourly_tiles_up_to_its_hour_and_no_later(feature_set):
    """Late events further back, where hourly tiles lie after their hour and reach into their 1 h window. On-time
    views at 22:01, 22:10, 23:30, 23:50, 00:01 and 02:59: at 02:59 the 22:00 and 23:00 hours roll up (their ends
    are 2 h or more behind it: no on-time event's 1 h window reaches them), 00:00 stays a fine tile. Counts written
    out by hand (each with the event):
    - 22:15: the 22:00 tile only, in its 1 h and 24 h windows (the 23:00 tile is after its hour);
    - 23:07: its 1 h window starts at 22:05, after the 22:00 tile began, so only the 23:00 tile (2) counts; its 24 h
      window takes both hours, the 23:30 and 23:50 events included (a rolled-up hour is one tile);
    - 00:03: its 1 h window starts at 23:00, exactly the 23:00 tile's start: that tile (2) and the 00:00 fine tile
      (1) count."""
    state = FeatureState(feature_set)
    for n, ts in enumerate([H0 + 60, H0 + 600, H0 + 5400, H0 + 6600, H0 + 7260, H0 + 4 * 3600 + 3540]):
        assert not state.observe(_at(n, ts, "view", "desktop")).late
    hour = int(H0 // 3600)
    assert state.hours == [hour, hour + 1] and len(state.fine_keys) == 2
    for n, (ts, n_1h, n_24h) in enumerate([(H0 + 900, 3, 3), (H0 + 3600 + 420, 3, 5), (H0 + 7200 + 180, 4, 6)]):
        observed = state.observe(_at(20 + n, ts, "view", "desktop"))
        got = named(observed.features, feature_set)
        assert observed.late
        assert (got["events_1h"], got["events_24h"], got["views_24h"]) == (n_1h, n_24h, n_24h), ts
        if feature_set == "v2":
            assert (got["events_6h"], got["events_7d"]) == (n_24h, n_24h), ts
    assert state.late_events == 3 and state.total_events == 6


def test_an_amount_on_an_event_other_than_a_purchase_is_its_amount_feature_but_not_summed():
    """In the purchase's tile, in a tile of its own, on time and late: only purchases add to the amount sums."""
    state = FeatureState("v2")
    state.add(Event.model_validate(_event(0, T0, "purchase", 10.0)))
    for n, ts in enumerate([T0 + 1, T0 + 600, T0 + 3 * 3600, T0 + 60]):   # the last one is late
        observed = state.observe(Event.model_validate(_event(n + 1, ts, "view", 99.0)))
        got = named(observed.features, "v2")
        assert observed.late == (n == 3) and got["amount"] == 99.0
        sums = (got["amount_sum_24h"], got["amount_sum_7d"], got["amount_avg_24h"], got["amount_avg_7d"])
        assert sums == (10.0,) * 4, ts


def test_an_hour_rolls_up_when_its_end_is_2_h_behind_and_is_kept_while_it_holds_the_retention_edge():
    """Fine tiles are kept while an on-time event's 1 h window can reach them (1 h lateness + 1 h), and hours roll up
    whole. v1 keeps 26 h of hourly tiles (24 h window + its 1 h resolution + 1 h lateness): the tile of the hour that
    holds the retention edge stays until the edge reaches the next hour; the cold part counts as changed only
    when a tile came or went."""
    state = FeatureState("v1")
    hour = int(H0 // 3600)
    state.add(Event.model_validate(_event(0, H0 + 3360)))           # 22:56: the hour's last 5-minute tile
    state.add(Event.model_validate(_event(1, H0 + 3 * 3600 - MS)))   # 00:59:59.999: not yet
    assert state.hours == [] and state.mark_stored() is False
    state.add(Event.model_validate(_event(2, H0 + 3 * 3600)))        # 01:00: 23:00 is 2 h back
    assert state.hours == [hour] and state.mark_stored() is True
    edge = H0 + 26 * 3600                                           # from here the retention edge is in hour 22 ...
    state.add(Event.model_validate(_event(3, edge + 2400)))         # ... at 22:40: the tile stays
    assert state.hours[0] == hour
    state.mark_stored()
    state.add(Event.model_validate(_event(4, edge + 2700)))         # 22:45: a new fine tile, nothing rolls or goes
    assert state.hours[0] == hour and state.mark_stored() is False
    state.add(Event.model_validate(_event(5, edge + 3600)))         # the edge reaches 23:00: hour 22 goes
    assert hour not in state.hours and state.mark_stored() is True
