"""The event schema's limits on both sides (README "Event schema"): ids of 1..128 characters, the future-skew
limit, non-negative finite times kept to the millisecond, ISO-8601 offsets honoured."""
import pytest
from lambdakit import local_time_zone

from pipeline.events import (INGEST_SKEW_SECONDS, MAX_EVENT_AGE_SECONDS, MAX_FUTURE_SKEW_SECONDS, parse_timestamp,
                             validate_event)

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


def test_naive_iso_times_are_utc_whatever_the_machines_time_zone():
    with local_time_zone("America/New_York"):
        assert parse_timestamp("2023-11-14T22:13:20") == 1_700_000_000.0


def test_the_last_second_of_year_9999_is_the_largest_time():
    """MAX_EPOCH is 9999-12-31T23:59:59Z, worked out by hand: 8,030 years from 1970 to 9999 with 1,947 leap years
    (2424 up to 9999 minus 477 up to 1969) are 2,932,897 days = 253,402,300,800 s; one second less. Inclusive."""
    assert parse_timestamp(253_402_300_799) == 253_402_300_799.0
    assert parse_timestamp("9999-12-31T23:59:59Z") == 253_402_300_799.0
    with pytest.raises(ValueError):
        parse_timestamp(253_402_300_799.001)


def test_a_date_alone_is_midnight_utc_with_or_without_z():
    # 2023-11-14T22:13:20Z is 1,700,000,000 s; 22:13:20 is 80,000 s after midnight
    assert parse_timestamp("2023-11-14") == parse_timestamp("2023-11-14Z") == 1_699_920_000.0


def test_ingest_ts_may_be_300_s_either_side_of_the_arrival_inclusive():
    for ingest_ts in (NOW - INGEST_SKEW_SECONDS, NOW + INGEST_SKEW_SECONDS):
        event, errors = validate_event(_raw(ingest_ts=ingest_ts), now=NOW)
        assert errors == [] and event.ingest_ts == ingest_ts
    for ingest_ts in (NOW - INGEST_SKEW_SECONDS - 0.001, NOW + INGEST_SKEW_SECONDS + 0.001):
        event, errors = validate_event(_raw(ingest_ts=ingest_ts), now=NOW)
        assert event is None and errors == ["ingest_ts: more than 300 s from the record's arrival in the stream"]
    assert INGEST_SKEW_SECONDS == 300


def test_max_event_age_is_inclusive():
    event, errors = validate_event(_raw(timestamp=NOW - MAX_EVENT_AGE_SECONDS), now=NOW)
    assert errors == [] and event.timestamp == NOW - 30 * 86400
    event, errors = validate_event(_raw(timestamp=NOW - MAX_EVENT_AGE_SECONDS - 0.001), now=NOW)
    assert event is None and errors == ["timestamp: more than 30 days in the past"]


def test_the_time_limits_count_from_ingest_ts_not_from_the_arrival():
    """A record the API accepted 200 s before it reached the stream: the age and future limits count from
    ingest_ts (the API's decision), so an event exactly 30 days older than ingest_ts passes and one 300.001 s
    newer fails, although from the arrival they would be 200 s inside and 100 s inside the limits."""
    arrival, accepted = NOW, NOW - 200
    oldest = _raw(timestamp=accepted - MAX_EVENT_AGE_SECONDS, ingest_ts=accepted)
    assert validate_event(oldest, now=NOW + 3600, arrival=arrival)[1] == []
    too_new = _raw(timestamp=accepted + MAX_FUTURE_SKEW_SECONDS + 0.001, ingest_ts=accepted)
    assert validate_event(too_new, now=NOW + 3600, arrival=arrival)[1] == ["timestamp: more than 300 s in the future"]
