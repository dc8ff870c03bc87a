import json
import time

import pytest

from pipeline.events import (CATEGORY_MAX_CHARS, ID_MAX_CHARS, MAX_AMOUNT, MAX_EPOCH, MAX_EVENT_AGE_SECONDS,
                             MAX_FUTURE_SKEW_SECONDS, parse_timestamp, validate_event)

NOW = time.time()


def valid(**fields) -> dict:
    return {"event_id": "e1", "user_id": "u1", "event_type": "view", "timestamp": NOW - 60} | fields


def test_valid_event_is_normalised():
    event, errors = validate_event({"event_id": "e1", "user_id": "u1", "event_type": "purchase",
                                    "timestamp": "2026-11-22T10:00:00Z", "amount": 12.5, "extra": "ignored"})
    assert errors == []
    assert event.timestamp == 1795341600.0
    assert event.priority == "medium"


@pytest.mark.parametrize("raw, field", [
    ({"user_id": "u1", "event_type": "view", "timestamp": 1}, "event_id"),
    ({"event_id": "", "user_id": "u1", "event_type": "view", "timestamp": 1}, "event_id"),
    ({"event_id": "e", "user_id": "u1", "event_type": "teleport", "timestamp": 1}, "event_type"),
    ({"event_id": "e", "user_id": "u1", "event_type": "view", "timestamp": "yesterday"}, "timestamp"),
    ({"event_id": "e", "user_id": "u1", "event_type": "view", "timestamp": 1, "amount": -1}, "amount"),
    ({"event_id": "e", "user_id": "u1", "event_type": "view", "timestamp": 1, "device_type": "watch"},
     "device_type"),
    ({"event_id": "e" * 129, "user_id": "u1", "event_type": "view", "timestamp": 1}, "event_id"),
])
def test_invalid_events_are_rejected_with_the_field_named(raw, field):
    event, errors = validate_event(raw)
    assert event is None
    assert any(e.startswith(field) for e in errors), errors


# The input contract (README "Reliability"): each rule, with a value just inside and one just outside.
@pytest.mark.parametrize("fields, error", [
    ({"user_id": " "}, "user_id: must not start or end with whitespace"),
    ({"user_id": "u1 "}, "user_id: must not start or end with whitespace"),
    ({"event_id": "e\u202e1"}, "event_id: character U+202E (RIGHT-TO-LEFT OVERRIDE) is not allowed"),
    ({"event_id": "e\x07"}, "event_id: character U+0007 (Cc) is not allowed"),
    ({"user_id": "a/b"}, "user_id: character U+002F (SOLIDUS) is not allowed"),
    ({"user_id": "100%"}, "user_id: character U+0025 (PERCENT SIGN) is not allowed"),
    ({"user_id": "a\u2028b"}, "user_id: character U+2028 (LINE SEPARATOR) is not allowed"),
    ({"user_id": 7}, "user_id: Input should be a valid string"),
    ({"merchant_category": "x" * (CATEGORY_MAX_CHARS + 1)}, "merchant_category: String should have at most 64"),
    ({"amount": True}, "amount: Input should be a valid number"),
    ({"amount": "1_000"}, "amount: Input should be a valid number"),
    ({"amount": "12"}, "amount: Input should be a valid number"),
    ({"amount": float("nan")}, "amount: Input should be a finite number"),
    ({"amount": 10 ** 400}, "amount: Input should be a valid number"),
    ({"amount": MAX_AMOUNT * 1.001}, "amount: Input should be less than or equal to 1000000000"),
    ({"timestamp": True}, "timestamp: must be ISO-8601 or epoch seconds, not a boolean"),
    ({"timestamp": "1_000"}, "timestamp: '1_000' is neither ISO-8601 nor epoch seconds"),
    ({"timestamp": "nan"}, "timestamp: 'nan' is neither ISO-8601 nor epoch seconds"),
    ({"timestamp": 10 ** 400}, "timestamp: must be a finite epoch time"),
    ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp: must be a finite epoch time"),
    ({"timestamp": 0}, "timestamp: more than 30 days in the past"),
    ({"timestamp": [NOW]}, "timestamp: must be ISO-8601 or epoch seconds, not list"),
    ({"timestamp": "2026-11-30 12:00:00 in the afternoon, roughly"},   # the text is cut to 40 characters
     "timestamp: '2026-11-30 12:00:00 in the afternoon, ro' is neither ISO-8601 nor epoch seconds"),
    ({"timestamp": NOW - MAX_EVENT_AGE_SECONDS - 5}, "timestamp: more than 30 days in the past"),
    ({"timestamp": NOW + MAX_FUTURE_SKEW_SECONDS + 5}, "timestamp: more than 300 s in the future"),
    ({"ingest_ts": float("inf")}, "ingest_ts: Input should be a finite number"),
    ({"ingest_ts": 1e300}, "ingest_ts: Input should be less than or equal to 253402300799"),
    ({"ingest_ts": NOW - 3600}, "ingest_ts: more than 300 s from the record's arrival in the stream"),
])
def test_the_input_contract_names_the_problem(fields, error):
    event, errors = validate_event(valid(**fields), now=NOW)
    assert event is None and errors[0].startswith(error), errors


@pytest.mark.parametrize("fields", [
    {"user_id": "café"}, {"user_id": "a b"}, {"event_id": "Ωmega-1_2.3~(x)!*:@,;=+&$<>[]{}|^"},
    {"user_id": "x" * ID_MAX_CHARS}, {"amount": 0}, {"amount": MAX_AMOUNT}, {"amount": 12}, {"amount": 1e-300},
    {"timestamp": NOW - MAX_EVENT_AGE_SECONDS + 5}, {"timestamp": NOW + MAX_FUTURE_SKEW_SECONDS - 5},
    {"timestamp": str(int(NOW))}, {"ingest_ts": NOW - 60},
])
def test_values_inside_the_contract_pass(fields):
    event, errors = validate_event(valid(**fields), now=NOW)
    assert errors == [] and event is not None


def test_the_stream_decides_against_the_time_the_api_accepted_the_event():
    """A record read a day late is judged against its ingest_ts (set by the API), not the reading time: the stream
    makes the API's decision again."""
    accepted_at = NOW - 86400
    raw = valid(timestamp=accepted_at - MAX_EVENT_AGE_SECONDS + 60, ingest_ts=accepted_at)
    assert validate_event(raw, now=NOW, arrival=accepted_at + 0.5)[1] == []
    assert validate_event(raw, now=accepted_at + 0.2)[1] == []  # as the API saw it


def test_non_object_and_future_events_are_rejected():
    assert validate_event([1, 2])[1] == ["event: expected a JSON object, got list"]
    event, errors = validate_event({"event_id": "e", "user_id": "u", "event_type": "view", "timestamp": 2000},
                                   now=1000)
    assert event is None and "future" in errors[0]


def test_timestamps_epoch_and_iso_agree():
    assert parse_timestamp("2026-11-22T00:00:00+00:00") == parse_timestamp(1795305600) == 1795305600.0
    assert parse_timestamp("2026-11-22T00:00:00") == 1795305600.0  # naive = UTC
    assert parse_timestamp("1e-200") == 0.0  # kept to the millisecond: no magnitude DynamoDB cannot store
    for bad in (True, "²", "١٢", " nan", "inf", "1e400", -1, MAX_EPOCH + 1):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_ids_fit_the_kinesis_partition_key_and_dynamodb_key_limits():
    """Kinesis PutRecordsRequestEntry: "PartitionKey ... Length Constraints: Minimum length of 1. Maximum length of
    256" (Unicode characters); DynamoDB: "The maximum length of a partition key value is 2048 bytes"
    (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsRequestEntry.html,
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html#limits-partition-sort-keys).
    The widest accepted id: ID_MAX_CHARS characters of 4 UTF-8 bytes each; the rejection ledger's key adds a prefix
    to a shard id and sequence number only."""
    widest = "\U00020000" * ID_MAX_CHARS  # a CJK ideograph outside the BMP: \\w, 4 bytes in UTF-8
    event, errors = validate_event(valid(user_id=widest, event_id=widest), now=NOW)
    assert errors == []
    assert 1 <= len(event.user_id) <= 256 and len(event.event_id.encode()) <= 2048


def test_the_largest_request_fits_a_putrecords_call():
    """PutRecords: "Each record in the request can be as large as 1 MiB, up to a limit of 5 MiB for the entire
    request, including partition keys", at most 500 records
    (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html). The API writes only the
    validated fields, so the largest record is bounded whatever the client sent."""
    from pipeline.ingest import MAX_EVENTS_PER_REQUEST

    wide = "\U00020000" * ID_MAX_CHARS  # json.dumps writes it as a 12-byte surrogate pair escape
    raw = valid(event_id=wide, user_id=wide, merchant_category="\U00020000" * CATEGORY_MAX_CHARS,
                amount=123456789.12345678, device_type="desktop", event_type="add_to_cart", priority="medium",
                padding="x" * 900_000)
    event, errors = validate_event(raw, now=NOW)
    record = json.dumps(event.model_dump(exclude_none=True) | {"ingest_ts": NOW}, separators=(",", ":")).encode()
    record_size = len(record) + len(event.user_id.encode())
    assert record_size < 1024 * 1024 and MAX_EVENTS_PER_REQUEST * record_size < 5 * 1024 * 1024


def test_amounts_and_times_stay_in_dynamodb_number_range():
    """DynamoDB numbers: up to 38 digits, positive range 1E-130 to 9.9999999999999999999999999999999999999E+125
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html).
    A window sum of the largest amount over the most events a tile count can hold (int32) stays far inside it,
    and times are kept to the millisecond (no magnitude below 1E-130 but 0)."""
    from boto3.dynamodb.types import TypeSerializer
    from pipeline import store

    largest_sum = float(MAX_AMOUNT) * (2 ** 31 - 1)
    item = store.to_item({"sum": largest_sum, "ts": float(MAX_EPOCH), "tiny_ts": parse_timestamp(1e-200)})
    assert TypeSerializer().serialize(item)  # raises on overflow, underflow or more than 38 digits
    assert largest_sum < 9.99e125
