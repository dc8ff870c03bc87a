"""The stored state (FeatureState.to_bytes / cold_bytes / from_bytes): a state read back behaves exactly as the
one stored, and states stored by earlier code (already in deployed tables) still load."""
import base64
import json
import random
import struct
import zlib
from pathlib import Path

import pytest

from pipeline.events import Event
from pipeline.features import FEATURE_SETS, FeatureState

T0 = 1_700_000_000.0
AMOUNT_SUMS = ("amount_sum_", "amount_avg_")   # features added up from amounts: their order of addition changed
STORED_BY_D944B30 = json.loads((Path(__file__).parent / "feature_state_d944b30.json").read_text())


def _bits(vector: list[float]) -> bytes:
    """A vector's exact bits (== on floats would let -0.0 and 0.0 pass as equal)."""
    return struct.pack(f"<{len(vector)}d", *vector)


def _events(seed: int, count: int, mean_gap: float) -> list[Event]:
    """Poisson arrivals with ~5 % out of order, ~3 % late (past the allowed lateness) and a few long gaps."""
    rng = random.Random(seed)
    ts, events = T0, []
    for n in range(count):
        ts += rng.expovariate(1 / mean_gap) if rng.random() < 0.98 else rng.uniform(3 * 3600, 3 * 86_400)
        r = rng.random()
        at = ts - rng.uniform(3700, 5 * 3600) if r < 0.03 else ts - rng.uniform(0, 1800) if r < 0.08 else ts
        kind = rng.choice(["view", "click", "add_to_cart", "purchase", "login"])
        events.append(Event.model_validate({
            "event_id": f"e{n}", "user_id": "u", "event_type": kind, "timestamp": round(at, 3),
            "amount": round(rng.uniform(1, 90), 2) if kind == "purchase" else None,
            "device_type": rng.choice(["mobile", "desktop", "tablet", None])}))
    return events


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
@pytest.mark.parametrize("mean_gap", [8_640, 86.4, 0.864])   # 10, 1,000 and 100,000 events a day
def test_a_state_read_back_behaves_exactly_as_the_one_stored(feature_set, mean_gap):
    """The invariant process_stream relies on: from_bytes(s.to_bytes(), s.cold_bytes()) continues like s, bit
    for bit, whatever the next events; checked after every few events, both states then carried on."""
    events = _events(seed=int(mean_gap * 10), count=900, mean_gap=mean_gap)
    rng = random.Random(1)
    state, checked = FeatureState(feature_set), 0
    for i, event in enumerate(events):
        state.observe(event)
        if rng.random() < 0.1:
            state.mark_stored()
            hot, cold = state.to_bytes(), state.cold_bytes()
            copy = FeatureState.from_bytes(hot, cold, feature_set)
            assert (copy.total_events, copy.late_events, copy.last_seen_ms, copy.cold_version) == (
                state.total_events, state.late_events, state.last_seen_ms, state.cold_version)
            assert _bits(copy.latest) == _bits(state.latest)
            for later in events[i + 1:i + 30]:
                a, b = state.observe(later), copy.observe(later)
                assert (_bits(a.features), a.late) == (_bits(b.features), b.late), (i, later)
                checked += 1
            state = copy if rng.random() < 0.5 else state   # carry on from either: they are the same
            assert (copy.to_bytes(), copy.cold_bytes()) == (state.to_bytes(), state.cold_bytes())
    assert checked > 1000


@pytest.mark.parametrize("case", STORED_BY_D944B30["cases"],
                         ids=lambda c: f"{c['feature_set']}-{c['events_per_day']}-per-day")
def test_a_state_stored_by_the_previous_code_still_loads(case):
    """States written by the code of commit d944b30 (zlib level 6, tile columns unpacked into lists) load,
    continue with the vectors that code computed for the next events, and are stored again in the same layout
    (only the zlib level differs). The vectors match to the last few bits: since the tiles are one timeline
    (commit after 3291a14) the amounts of a window are added in time order, not as 5-minute and hourly parts, so
    a sum of many amounts may round differently in its last bit (those features, and the averages over them, to
    1e-12); every other feature is compared bit for bit."""
    hot, cold = base64.b64decode(case["hot"]), base64.b64decode(case["cold"])
    exact = [i for i, name in enumerate(FEATURE_SETS[case["feature_set"]]) if not name.startswith(AMOUNT_SUMS)]
    state = FeatureState.from_bytes(hot, cold, case["feature_set"])
    assert (state.total_events, state.late_events) == (case["total_events"], case["late_events"])
    assert _bits(state.latest) == _bits(case["latest"])
    assert zlib.decompress(state.to_bytes()) == zlib.decompress(hot)
    assert zlib.decompress(state.cold_bytes()) == zlib.decompress(cold)
    hot_only = FeatureState.from_bytes(hot, None, case["feature_set"], hot_only=True)
    hot_only.attach_cold(cold)
    for raw, vector, late in zip(case["next_events"], case["next_vectors"], case["next_late"], strict=True):
        for loaded in (state, hot_only):
            observed = loaded.observe(Event.model_validate(raw))
            assert observed.late == late, raw["event_id"]
            assert _bits([observed.features[i] for i in exact]) == _bits([vector[i] for i in exact]), raw["event_id"]
            assert observed.features == pytest.approx(vector, rel=1e-12, abs=0), raw["event_id"]


def test_an_unknown_format_is_refused():
    state = FeatureState("v1")
    state.add(Event.model_validate({"event_id": "e", "user_id": "u", "event_type": "view", "timestamp": T0}))
    body = bytearray(zlib.decompress(state.to_bytes()))
    body[0] = 9   # the format byte
    with pytest.raises(ValueError, match="stored state has format 9; this code reads 1"):
        FeatureState.from_bytes(zlib.compress(bytes(body)), None, "v1")


@pytest.mark.parametrize("feature_set,code", [("v1", 1), ("v2", 2)])
def test_the_stored_layout_of_an_empty_state_and_the_zlib_level_of_each_part(feature_set, code):
    """The stored parts are a format that other versions of the code read (format 1): an empty state is its
    headers alone (format, set, last seen -1, events, late, fine tiles, vector width, cold version; format, set,
    cold version, hourly tiles). The hot part, rewritten on every batch, is compressed at zlib level 1, the cold
    part, rewritten about once an hour, at level 6 (docs/performance.md has the measurements behind both)."""
    empty = FeatureState(feature_set)
    assert zlib.decompress(empty.to_bytes()) == struct.pack("<BBqIIHBI", 1, code, -1, 0, 0, 0, 0, 0)
    assert zlib.decompress(empty.cold_bytes()) == struct.pack("<BBIH", 1, code, 0, 0)
    state = FeatureState(feature_set)
    for n in range(300):   # one event a minute for 5 hours: hourly tiles and fine tiles
        state.observe(Event.model_validate({"event_id": f"e{n}", "user_id": "u", "event_type": "purchase",
                                            "timestamp": T0 + 60 * n, "amount": 1.5 + n % 7}))
    hot, cold = state.to_bytes(), state.cold_bytes()
    assert len(state.hours) and hot == zlib.compress(zlib.decompress(hot), 1)
    assert cold == zlib.compress(zlib.decompress(cold), 6)
