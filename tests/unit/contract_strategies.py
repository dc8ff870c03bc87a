"""Hypothesis strategies for hostile input: event-like objects whose fields mix valid and invalid values, and raw
payloads no JSON encoder would write (deep nesting, integer literals beyond Python's 4,300 digits, bad UTF-8)."""
import base64
import json
import time
from datetime import datetime, timezone

from hypothesis import strategies as st

NOW = time.time()

ids = st.one_of(
    st.sampled_from(["u1", "e1", "café", "a b", "a/b", "a%41", " ", "", "x" * 129, "e\u202e", "e\x00", "a\u2028b",
                     "\ud800", "rejected#shardId-000000000000#1"]),
    st.text(max_size=12), st.text(alphabet=st.characters(codec="utf-8"), min_size=120, max_size=130),
    st.integers(), st.booleans(), st.none())
numbers = st.one_of(
    st.floats(), st.integers(min_value=-10**40, max_value=10**40), st.just(10**400), st.booleans(),
    st.sampled_from(["1_000", "12", "nan", "1e309", "²", "-0", " 5 "]), st.text(max_size=8), st.none())
times = st.one_of(
    numbers, st.floats(min_value=NOW - 40 * 86400, max_value=NOW + 900),
    st.datetimes().map(lambda d: d.isoformat()), st.sampled_from(["2026-11-29T10:00:00Z", "0001-01-01T00:00:00+01:00",
                                                                  "9999-12-31T23:59:59-23:59", "yesterday"]))
hostile_events = st.fixed_dictionaries({
    "event_id": ids, "user_id": ids,
    "event_type": st.one_of(st.sampled_from(["view", "purchase", "teleport", "VIEW"]), st.integers()),
    "timestamp": times,
}, optional={
    "amount": st.one_of(numbers, st.floats(min_value=0, max_value=2e9)),
    "device_type": st.sampled_from(["mobile", "watch", 1]),
    "merchant_category": ids,
    "priority": st.sampled_from(["low", "high", "urgent", None]),
    "ingest_ts": st.one_of(numbers, st.floats(min_value=NOW - 600, max_value=NOW + 600)),
    "extra": st.recursive(st.none() | st.integers() | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                      max_size=3), max_leaves=8),
})
# valid events (to reach the code after validation), then the same with one field made hostile
id_chars = st.characters(categories=["L", "N"]) | st.sampled_from("-._~()'!*:@,;=+&$<>[]{}|^_")
valid_ids = st.sampled_from(["u1", "u2", "café", "a b", "Ωmega"]) | st.text(id_chars, min_size=1, max_size=128)
valid_times = st.floats(min_value=NOW - 29 * 86400, max_value=NOW + 200)
valid_events = st.fixed_dictionaries({
    "event_id": valid_ids, "user_id": valid_ids,
    "event_type": st.sampled_from(["view", "click", "add_to_cart", "purchase", "login", "logout"]),
    "timestamp": valid_times | valid_times.map(lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()),
}, optional={
    "amount": st.floats(min_value=0, max_value=1e9) | st.integers(min_value=0, max_value=10**9),
    "device_type": st.sampled_from(["mobile", "desktop", "tablet"]),
    "merchant_category": valid_ids.filter(lambda i: len(i) <= 64),
    "priority": st.sampled_from(["low", "medium", "high"]),
})
events = st.one_of(
    valid_events,
    st.tuples(valid_events, hostile_events).flatmap(
        lambda pair: st.sampled_from(sorted(pair[1])).map(lambda key: pair[0] | {key: pair[1][key]})),
    hostile_events)
# JSON values as Python's json writes them (NaN and Infinity included: Python's json reads them too)
json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=4), max_leaves=10)
HOSTILE_PAYLOADS = [b"[" * 50_000, b'{"a":' * 5000, b'{"event_id": "e", "timestamp": ' + b"9" * 5000 + b"}",
                    b'{"timestamp": 1' + b"0" * 400 + b".5}", b"\xff\xfe{}", b'{"event_id": "\xed\xa0\x80"}', b"",
                    b"NaN", b'{"amount": Infinity}', b"null", b"\x00"]
payloads = st.one_of(events.map(lambda e: json.dumps(e).encode("utf-8", "surrogatepass")),
                     json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
                     st.sampled_from(HOSTILE_PAYLOADS), st.binary(max_size=64))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
