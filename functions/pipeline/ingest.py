"""Write side of the HTTP API: parse a request body into events, validate, put to Kinesis."""
from __future__ import annotations

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


class BadRequest(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


def parse_body(body: str | None, content_type: str) -> list[Any]:
    """One event object, {"events": [...]}, or NDJSON (application/x-ndjson)."""
    if not body:
        raise BadRequest("empty_body", "request body is empty")
    if len(body.encode()) > MAX_BODY_BYTES:
        raise BadRequest("body_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes", 413)
    if "ndjson" in content_type or "jsonlines" in content_type:
        raws = []
        for number, line in enumerate(body.splitlines(), start=1):
            if line.strip():
                try:
                    raws.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise BadRequest("malformed_body", f"line {number} is not valid JSON: {exc.msg}") from None
    else:
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BadRequest("malformed_body", f"body is not valid JSON: {exc.msg}") from None
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

    def body(self) -> dict:
        result = {"accepted": self.accepted, "rejected": self.rejected}
        if self.failed:
            result["failed"] = self.failed  # could not be written to the stream: safe for the client to retry
        return result


def ingest(raws: list[Any], settings: Settings) -> IngestResult:
    now = time.time()
    result = IngestResult()
    entries = []  # (index, event_id, record)
    for index, raw in enumerate(raws):
        event, errors = validate_event(raw, now=now)
        if event is None:
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            result.rejected.append({"index": index, "event_id": event_id, "errors": errors})
            continue
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
        for entry, outcome in zip(pending, response["Records"]):
            if "ErrorCode" in outcome:
                retry.append((entry, outcome))
            else:
                result.accepted += 1
        pending = [entry for entry, _ in retry]
        last_errors = [outcome for _, outcome in retry]
    if pending:
        result.failed = [{"index": index, "event_id": event_id, "error": outcome.get("ErrorCode")}
                         for (index, event_id, _), outcome in zip(pending, last_errors)]
    store.add_counters(settings.state_table, "stats", {"events_ingested": result.accepted,
                                                       "events_rejected_at_api": len(result.rejected)})
    return result
