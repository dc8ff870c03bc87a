import pytest

from pipeline.events import parse_timestamp, validate_event


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


def test_non_object_and_future_events_are_rejected():
    assert validate_event([1, 2])[1] == ["event: expected a JSON object, got list"]
    event, errors = validate_event({"event_id": "e", "user_id": "u", "event_type": "view", "timestamp": 2000},
                                   now=1000)
    assert event is None and "future" in errors[0]


def test_timestamps_epoch_and_iso_agree():
    assert parse_timestamp("2026-11-22T00:00:00+00:00") == parse_timestamp(1795305600) == 1795305600.0
    assert parse_timestamp("2026-11-22T00:00:00") == 1795305600.0  # naive = UTC
    with pytest.raises(ValueError):
        parse_timestamp(True)
