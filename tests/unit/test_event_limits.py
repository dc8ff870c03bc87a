"""The event schema's limits on both sides (README "Event schema"): ids of 1..128 characters, the future-skew
limit, non-negative finite times kept to the millisecond, ISO-8601 offsets honoured."""
import pytest

from pipeline.events import MAX_FUTURE_SKEW_SECONDS, parse_timestamp, validate_event

NOW = 1_795_305_600.0  # 2026-11-22T00:00:00Z


def _raw(**fields) -> dict:
    return {"event_id": "e1", "user_id": "u1", "event_type": "view", "timestamp": NOW} | fields


@pytest.mark.parametrize("field", ["event_id", "user_id"])
def test_ids_of_128_characters_pass_and_129_fail(field):
    event, errors = validate_event(_raw(**{field: "x" * 128}), now=NOW)
    assert errors == [] and getattr(event, field) == "x" * 128
    event, errors = validate_event(_raw(**{field: "x" * 129}), now=NOW)
    assert event is None and errors[0].startswith(f"{field}:")
    event, errors = validate_event(_raw(**{field: ""}), now=NOW)
    assert event is None and errors[0].startswith(f"{field}:")


def test_future_skew_limit_is_inclusive():
    at_limit, errors = validate_event(_raw(timestamp=NOW + MAX_FUTURE_SKEW_SECONDS), now=NOW)
    assert errors == [] and at_limit.timestamp == NOW + 300
    event, errors = validate_event(_raw(timestamp=NOW + MAX_FUTURE_SKEW_SECONDS + 0.001), now=NOW)
    assert event is None and errors == ["timestamp: more than 300 s in the future"]
    assert validate_event(_raw(timestamp=NOW - 3600), now=NOW)[1] == []
    assert MAX_FUTURE_SKEW_SECONDS == 300


def test_epoch_zero_is_valid_and_negative_or_infinite_times_are_not():
    assert parse_timestamp(0) == 0.0
    assert parse_timestamp("0.5") == 0.5
    for bad in (-0.001, "-1", float("inf"), "inf", float("nan"), "nan", None, [1]):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_times_are_kept_to_the_millisecond():
    assert parse_timestamp(1_700_000_000.1234) == 1_700_000_000.123
    assert parse_timestamp(1_700_000_000.0004) == 1_700_000_000.0
    assert parse_timestamp(" 1700000000.5 ") == 1_700_000_000.5


def test_iso_offsets_are_honoured_and_naive_means_utc():
    utc = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert parse_timestamp("2023-11-14T22:13:20Z") == utc
    assert parse_timestamp("2023-11-14T22:13:20") == utc
    assert parse_timestamp("2023-11-14T23:13:20+01:00") == utc
    assert parse_timestamp("2023-11-14T22:13:20.250Z") == utc + 0.25


def test_a_boolean_timestamp_is_rejected_with_a_reason():
    event, errors = validate_event(_raw(timestamp=True), now=NOW)
    assert event is None and errors[0].startswith("timestamp:") and "boolean" in errors[0]


def test_naive_iso_times_are_utc_whatever_the_machines_time_zone(monkeypatch):
    import time
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_timestamp("2023-11-14T22:13:20") == 1_700_000_000.0
    finally:
        monkeypatch.undo()
        time.tzset()
