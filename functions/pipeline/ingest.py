"""Write side of the HTTP API: parse a request body into events, validate, put to Kinesis."""
from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any

from . import aws, store
from .events import validate_event
from .settings import Settings

MAX_EVENTS_PER_REQUEST = 500
MAX_BODY_BYTES = 1_048_576
PUT_ATTEMPTS = 4
JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")


class BadRequest(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


def body_format(content_type: str | None) -> str:
    """"json" or "ndjson" from a Content-Type header (none means JSON); anything else is 415."""
    media_type, _, params = (content_type or "application/json").partition(";")
    media_type = media_type.strip().lower()
    charset = next((p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";")
                    if p.strip().lower().startswith("charset=")), "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise BadRequest("unsupported_media_type", f"charset {charset[:40]!r} is not supported: send UTF-8", 415)
    if media_type in JSON_TYPES:
        return "json"
    if media_type in NDJSON_TYPES:
        return "ndjson"
    raise BadRequest("unsupported_media_type", f"content type {media_type[:80]!r} is not supported: send "
                     f"{' or '.join(JSON_TYPES + NDJSON_TYPES[:1])}", 415)


def body_text(body: str | None, is_base64: bool) -> str:
    """The request body as text: base64-decoded when API Gateway encoded it, strict UTF-8, at most
    MAX_BODY_BYTES (413 above)."""
    if not body:
        raise BadRequest("empty_body", "request body is empty")
    if len(body) > 4 * MAX_BODY_BYTES:  # more than any base64 or UTF-8 form of MAX_BODY_BYTES: no need to decode
        raise BadRequest("body_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        data = base64.b64decode(body, validate=True) if is_base64 else body.encode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest("malformed_body", "body is marked base64-encoded but is not valid base64") from None
    if len(data) > MAX_BODY_BYTES:
        raise BadRequest("body_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("malformed_body", f"body is not UTF-8 (byte {exc.start})") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str, where: str = "body") -> Any:
    """json.loads that turns every way a text can fail to be JSON into a 400: NaN/Infinity (not JSON), integers
    too long for Python (a ValueError that is not a JSONDecodeError), nesting too deep (RecursionError)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest("malformed_body", f"{where} is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:
        raise BadRequest("malformed_body", f"{where} is not valid JSON: {str(exc)[:120]}") from None
    except RecursionError:
        raise BadRequest("malformed_body", f"{where} is nested too deeply") from None


def parse_body(text: str, body_format: str) -> list[Any]:
    """One event object, {"events": [...]}, or NDJSON: one JSON value per line, lines split on \\n only
    (JSON strings may hold U+2028 and other line separators), a trailing \\r dropped, blank lines skipped."""
    if body_format == "ndjson":
        raws = [loads(line, f"line {number}") for number, line in enumerate(text.split("\n"), start=1)
                if line.strip(" \t\r")]
    else:
        parsed = loads(text)
        if isinstance(parsed, dict) and "events" in parsed:
            raws = parsed["events"]
            if not isinstance(raws, list):
                raise BadRequest("malformed_body", '"events" must be a list')
        elif isinstance(parsed, dict):
            raws = [parsed]
        else:
            raise BadRequest("malformed_body", 'body must be an event object or {"events": [...]}')
    if not raws:
        raise BadRequest("no_events", "no events in the request")
    if len(raws) > MAX_EVENTS_PER_REQUEST:
        raise BadRequest("too_many_events", f"at most {MAX_EVENTS_PER_REQUEST} events per request", 413)
    return raws


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)

    def body(self) -> dict:
        result = {"accepted": self.accepted, "rejected": self.rejected}
        if self.duplicates:
            result["duplicates"] = self.duplicates  # same event_id as an earlier event of the request: sent once
        if self.failed:
            result["failed"] = self.failed  # could not be written to the stream: safe for the client to retry
        return result


def ingest(raws: list[Any], settings: Settings) -> IngestResult:
    now = time.time()
    result = IngestResult()
    entries = []  # (index, event_id, record)
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raws):
        if isinstance(raw, dict):
            raw = {k: v for k, v in raw.items() if k != "ingest_ts"}  # the API sets it, not the client
        event, errors = validate_event(raw, now=now)
        if event is None:
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            result.rejected.append({"index": index, "event_id": event_id if isinstance(event_id, str) else None,
                                    "errors": errors})
            continue
        if event.event_id in first_index:  # the first one wins, as in the stream's dedupe
            result.duplicates.append({"index": index, "event_id": event.event_id,
                                      "duplicate_of": first_index[event.event_id]})
            continue
        first_index[event.event_id] = index
        data = event.model_dump(exclude_none=True) | {"ingest_ts": now}
        entries.append((index, event.event_id,
                        {"Data": json.dumps(data, separators=(",", ":")).encode(), "PartitionKey": event.user_id}))
    pending = entries
    for attempt in range(PUT_ATTEMPTS):
        if not pending:
            break
        if attempt:
            time.sleep(0.05 * 2 ** attempt)
        response = aws.client("kinesis").put_records(StreamName=settings.events_stream,
                                                     Records=[record for _, _, record in pending])
        retry = []
        for entry, outcome in zip(pending, response["Records"], strict=True):
            if "ErrorCode" in outcome:
                retry.append((entry, outcome))
            else:
                result.accepted += 1
        pending = [entry for entry, _ in retry]
        last_errors = [outcome for _, outcome in retry]
    if pending:
        result.failed = [{"index": index, "event_id": event_id, "error": outcome.get("ErrorCode")}
                         for (index, event_id, _), outcome in zip(pending, last_errors, strict=True)]
    store.add_counters(settings.state_table, "stats", {"events_ingested": result.accepted,
                                                       "events_rejected_at_api": len(result.rejected)})
    return result
