"""The event schema and its validation: the input contract (README "Reliability").

The API validates before writing to Kinesis; process_stream validates again with the same rules, because producers
may also write to the stream directly. A record that fails validation is rejected with its reasons and kept.
Everything that passes can be stored: ids fit the Kinesis partition key and DynamoDB key limits and can be read
back through the routes, numbers are finite and in ranges DynamoDB and the feature tiles can hold.
"""
from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "login", "logout")
DEVICE_TYPES = ("mobile", "desktop", "tablet")
PRIORITIES = ("low", "medium", "high")

ID_MAX_CHARS = 128                  # Kinesis partition keys: 1-256 characters; DynamoDB keys: 2048 bytes
CATEGORY_MAX_CHARS = 64
MAX_AMOUNT = 1_000_000_000          # a 7-day sum of 2^31 such amounts is still a finite, storable number
MAX_EPOCH = 253_402_300_799         # 9999-12-31T23:59:59Z, the last second datetime can represent
MAX_EVENT_AGE_SECONDS = 30 * 86400  # four times the longest feature window (7 d); older data is a backfill
MAX_FUTURE_SKEW_SECONDS = 300
INGEST_SKEW_SECONDS = 300           # ingest_ts (set by the API) against the record's arrival in the stream

# An id is one path segment as the API's router (Powertools) matches it in the decoded path API Gateway passes:
# letters and digits of any script (Python's \w), space, and -._~()'!*:@,;=+&$<>[]{}|^ . Not "/" (it splits the
# path before routing), not "%" (so an id decoded once or twice is the same id), no control or format characters.
ID_PUNCTUATION = "-._~()'!*:@,;=+&$<>[]{}|^ "
_ID_CHAR = re.compile(r"[\w" + re.escape(ID_PUNCTUATION) + r"]")
_ID = re.compile(r"(?! )" + _ID_CHAR.pattern + r"+(?<! )")  # no leading or trailing space
# Epoch seconds as text: ASCII digits only (float() would also take "1_000", "nan", "inf" and other scripts' digits)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def check_id(value: str) -> str:
    """Raise ValueError naming the first character an id cannot hold."""
    if _ID.fullmatch(value):
        return value
    if value.strip() != value:
        raise ValueError("must not start or end with whitespace")
    bad = next(c for c in value if not _ID_CHAR.fullmatch(c))
    name = unicodedata.name(bad, unicodedata.category(bad))
    raise ValueError(f"character U+{ord(bad):04X} ({name}) is not allowed: ids are letters, digits, spaces "
                     f"and {ID_PUNCTUATION.strip()}")


def parse_timestamp(value: Any) -> float:
    """ISO-8601 (naive means UTC) or epoch seconds (a JSON number or its ASCII text) -> epoch seconds, to the
    millisecond, in [0, MAX_EPOCH]. Raises ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("must be ISO-8601 or epoch seconds, not a boolean")
    try:
        if isinstance(value, (int, float)):
            ts = float(value)
        elif isinstance(value, str):
            text = value.strip()
            if _NUMBER.fullmatch(text):
                ts = float(text)
            else:
                try:
                    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                except ValueError:
                    raise ValueError(f"{value[:40]!r} is neither ISO-8601 nor epoch seconds") from None
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                ts = parsed.timestamp()
        else:
            raise ValueError(f"must be ISO-8601 or epoch seconds, not {type(value).__name__}")
    except OverflowError:
        ts = math.inf
    if not math.isfinite(ts) or not 0 <= ts <= MAX_EPOCH:
        raise ValueError(f"must be a finite epoch time from 0 to {MAX_EPOCH} (year 9999)")
    return round(ts, 3)  # event time is kept to the millisecond (the feature tiles store milliseconds)


Id = Annotated[str, Field(strict=True, min_length=1, max_length=ID_MAX_CHARS), AfterValidator(check_id)]
Category = Annotated[str, Field(strict=True, min_length=1, max_length=CATEGORY_MAX_CHARS), AfterValidator(check_id)]
EpochSeconds = Annotated[float, BeforeValidator(parse_timestamp)]
Amount = Annotated[float, Field(strict=True, ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]  # not true, "12", "1_000"
IngestTime = Annotated[float, Field(strict=True, ge=0, le=MAX_EPOCH, allow_inf_nan=False)]


class Event(BaseModel):
    """One user event. ``timestamp`` is normalised to epoch seconds (float, UTC, to the millisecond)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    user_id: Id
    event_type: Literal["view", "click", "add_to_cart", "purchase", "login", "logout"]
    timestamp: EpochSeconds
    amount: Optional[Amount] = None
    device_type: Optional[Literal["mobile", "desktop", "tablet"]] = None
    merchant_category: Optional[Category] = None
    priority: Literal["low", "medium", "high"] = "medium"
    # Set by the API when it accepts the event (epoch seconds); used for ingest-to-prediction latency.
    ingest_ts: Optional[IngestTime] = None


def error_messages(exc: ValidationError) -> list[str]:
    """Pydantic errors as short strings: "<field>: <message>"."""
    messages = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or "event"
        messages.append(f"{field}: {err['msg'].removeprefix('Value error, ')}")
    return messages


def validate_event(raw: Any, now: float | None = None, arrival: float | None = None) -> tuple[Event | None, list[str]]:
    """Validate one raw event. Returns (event, []) or (None, [reasons]).

    With ``now``, the time rules apply too: ``ingest_ts`` within INGEST_SKEW_SECONDS of ``arrival`` (when the
    record entered the stream; default ``now``), and ``timestamp`` from MAX_EVENT_AGE_SECONDS before to
    MAX_FUTURE_SKEW_SECONDS after the time the event was accepted (``ingest_ts``, else ``arrival``, else ``now``),
    so the stream decides as the API did, however late it reads the record."""
    if not isinstance(raw, dict):
        return None, [f"event: expected a JSON object, got {type(raw).__name__}"]
    try:
        event = Event.model_validate(raw)
    except ValidationError as exc:
        return None, error_messages(exc)
    if now is None:
        return event, []
    received = arrival or now
    if event.ingest_ts is not None and abs(event.ingest_ts - received) > INGEST_SKEW_SECONDS:
        return None, [f"ingest_ts: more than {INGEST_SKEW_SECONDS} s from the record's arrival in the stream"]
    accepted = event.ingest_ts if event.ingest_ts is not None else received
    if event.timestamp > accepted + MAX_FUTURE_SKEW_SECONDS:
        return None, [f"timestamp: more than {MAX_FUTURE_SKEW_SECONDS} s in the future"]
    if event.timestamp < accepted - MAX_EVENT_AGE_SECONDS:
        return None, [f"timestamp: more than {MAX_EVENT_AGE_SECONDS // 86400} days in the past"]
    return event, []
