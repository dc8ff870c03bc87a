"""The event schema (docs: README "Event schema") and its validation.

The API validates before writing to Kinesis; process_stream validates again, because producers may also
write to the stream directly. A record that fails validation is rejected with its reasons and kept.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "login", "logout")
DEVICE_TYPES = ("mobile", "desktop", "tablet")
PRIORITIES = ("low", "medium", "high")
MAX_FUTURE_SKEW_SECONDS = 300


class Event(BaseModel):
    """One user event. ``timestamp`` is normalised to epoch seconds (float, UTC, to the millisecond)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    event_type: Literal["view", "click", "add_to_cart", "purchase", "login", "logout"]
    timestamp: float
    amount: Optional[float] = Field(default=None, ge=0, allow_inf_nan=False)
    device_type: Optional[Literal["mobile", "desktop", "tablet"]] = None
    merchant_category: Optional[str] = Field(default=None, max_length=64)
    priority: Literal["low", "medium", "high"] = "medium"
    # Set by the API when it accepts the event (epoch seconds); used for ingest-to-prediction latency.
    ingest_ts: Optional[float] = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, value: Any) -> float:
        return parse_timestamp(value)


def parse_timestamp(value: Any) -> float:
    """ISO-8601 (naive means UTC) or epoch seconds -> epoch seconds."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO-8601 or epoch seconds, not a boolean")
    if isinstance(value, (int, float)):
        ts = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            ts = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"timestamp {value!r} is neither ISO-8601 nor epoch seconds") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            ts = parsed.timestamp()
    else:
        raise ValueError("timestamp must be ISO-8601 or epoch seconds")
    if not math.isfinite(ts) or ts < 0:
        raise ValueError("timestamp must be a finite, non-negative epoch time")
    return round(ts, 3)  # event time is kept to the millisecond (the feature tiles store milliseconds)


def error_messages(exc: ValidationError) -> list[str]:
    """Pydantic errors as short strings: "<field>: <message>"."""
    messages = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or "event"
        messages.append(f"{field}: {err['msg']}")
    return messages


def validate_event(raw: Any, now: float | None = None) -> tuple[Event | None, list[str]]:
    """Validate one raw event. Returns (event, []) or (None, [reasons])."""
    if not isinstance(raw, dict):
        return None, [f"event: expected a JSON object, got {type(raw).__name__}"]
    try:
        event = Event.model_validate(raw)
    except ValidationError as exc:
        return None, error_messages(exc)
    if now is not None and event.timestamp > now + MAX_FUTURE_SKEW_SECONDS:
        return None, [f"timestamp: more than {MAX_FUTURE_SKEW_SECONDS} s in the future"]
    return event, []
