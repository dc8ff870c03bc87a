"""process_stream: Kinesis records -> validated events -> dedupe -> per-user features -> one inference run.

Exactly-once effect on redelivery (a batch retried after a partial failure or a crash):
- the ledger (EVENTS_TABLE) remembers each event_id with the Kinesis sequence number that carried it and the
  features computed for it. The same event_id under another sequence number is a client duplicate: skipped.
  The same event_id under the same sequence number is a redelivery: its stored features are reused.
- each user's feature state carries ``last_seq``, the highest sequence number already applied to it. Records of a
  user come from one shard in order (partition key = user_id), so a redelivered record (seq <= last_seq) is
  never applied twice.
- the stream counters (processed, rejected, duplicate, late) live on one item per shard with ``counted_seq``,
  the last sequence number counted; one conditional UpdateItem adds a batch's counts and moves the mark, so a
  redelivered record is never counted twice (GET /stats sums the shards).
Writes go ledger -> feature state -> counters -> StartExecution, so a crash between any two steps is repaired by
the retry.
"""
from __future__ import annotations

import base64
import binascii
import os
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from . import aws, store
from .events import Event, validate_event
from .features import FeatureState, feature_names, named
from .settings import Settings

LEDGER_TTL_SECONDS = 7 * 24 * 3600
MAX_INLINE_INPUT_BYTES = 200_000  # Step Functions caps state input at 256 KB
RAW_KEEP_BYTES = 2048


@dataclass
class StreamRecord:
    sequence: str
    shard_id: str
    arrival: float
    size: int
    event: Event | None = None
    errors: list[str] = field(default_factory=list)
    raw: str = ""


def decode(record: dict, now: float | None = None) -> StreamRecord:
    """Decode and validate one Lambda Kinesis record. Never raises for bad data: it is rejected with reasons."""
    kinesis = record["kinesis"]
    shard_id = record.get("eventID", "shardId-unknown:").split(":", 1)[0]
    try:
        data = base64.b64decode(kinesis["data"], validate=True)
    except (binascii.Error, ValueError):
        data = b""
    result = StreamRecord(sequence=kinesis["sequenceNumber"], shard_id=shard_id,
                          arrival=float(kinesis.get("approximateArrivalTimestamp") or 0.0), size=len(data))
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        result.errors = [f"record: not valid JSON ({exc.__class__.__name__})"]
        result.raw = data[:RAW_KEEP_BYTES].decode("utf-8", "replace")
        return result
    result.event, result.errors = validate_event(payload, now=now)
    if result.event is None:
        result.raw = data[:RAW_KEEP_BYTES].decode("utf-8", "replace")
    return result


@dataclass
class BatchOutcome:
    batch_id: str | None
    events: int
    duplicates: int
    rejected: int
    execution_arn: str | None
    late: int = 0


def counters_key(shard_id: str) -> str:
    return f"stream#{shard_id}"


def batch_id_for(records: list[StreamRecord]) -> str:
    first, last = records[0], records[-1]
    digest = hashlib.sha256(f"{first.shard_id}:{first.sequence}:{last.sequence}".encode()).hexdigest()
    return f"b-{digest[:32]}"  # deterministic: a redelivered batch gets the same id


def process(records: list[StreamRecord], settings: Settings, started: float | None = None) -> BatchOutcome:
    """Everything after decoding, for the records of one batch, in sequence order."""
    started = started if started is not None else time.time()
    now = time.time()
    if not records:
        return BatchOutcome(None, 0, 0, 0, None)
    feature_set = settings.feature_set
    feature_names(feature_set)  # an unknown set fails loudly before anything is written
    rejected = [r for r in records if r.event is None]
    valid = [r for r in records if r.event is not None]

    ledger = {item["event_id"]: item for item in store.batch_get(
        settings.events_table, [{"event_id": r.event.event_id} for r in valid],
        attributes=("seq", "features", "late"))}
    counted_mark = (store.get_item(settings.state_table, {"pk": counters_key(records[0].shard_id)}) or {}).get(
        "counted_seq")
    counted = int(counted_mark) if counted_mark is not None else -1
    tally = {"events_processed_by_stream": 0, "events_rejected": 0, "events_duplicate": 0, "events_late": 0}
    fresh: list[StreamRecord] = []
    replayed: dict[str, list[float]] = {}
    seen_in_batch: set[str] = set()
    duplicates = 0
    for r in valid:
        known = ledger.get(r.event.event_id)
        if r.event.event_id in seen_in_batch or (known is not None and known.get("seq") != r.sequence):
            duplicates += 1  # a client retry of an event we already have
            tally["events_duplicate"] += int(r.sequence) > counted
            continue
        seen_in_batch.add(r.event.event_id)
        if known is not None:
            replayed[r.event.event_id] = json.loads(known["features"])
        fresh.append(r)

    users = {r.event.user_id for r in fresh}
    stored = {item["user_id"]: item for item in store.batch_get(
        settings.features_table, [{"user_id": u, "feature_set": feature_set} for u in users],
        attributes=("state", "last_seq"))}
    states = {u: FeatureState.from_json(stored.get(u, {}).get("state"), feature_set) for u in users}
    last_seq = {u: int(stored.get(u, {}).get("last_seq", "-1")) for u in users}
    touched: set[str] = set()

    rows = []
    ledger_items = []
    late = 0
    for r in fresh:  # sequence order == arrival order within the shard
        event = r.event
        features, is_late = None, False
        if int(r.sequence) > last_seq[event.user_id]:
            observed = states[event.user_id].observe(event)
            features, is_late = observed.features, observed.late
            late += is_late
            last_seq[event.user_id] = int(r.sequence)
            touched.add(event.user_id)
        if event.event_id in replayed:
            features = replayed[event.event_id]
            is_late = bool(ledger[event.event_id].get("late"))
        if int(r.sequence) > counted:
            tally["events_processed_by_stream"] += 1
            tally["events_late"] += is_late
        elif features is None:
            # Applied to the state but absent from the ledger: cannot happen with the write order above
            # (ledger first). Score it on a throw-away copy rather than lose it.
            features = FeatureState.from_json(states[event.user_id].to_json(), feature_set).add(event)
        features = [round(f, 6) for f in features]
        rows.append({"event_id": event.event_id, "user_id": event.user_id, "ts": event.timestamp,
                     "ingest_ts": event.ingest_ts or r.arrival or now, "features": features})
        if event.event_id not in replayed:
            ledger_items.append({"event_id": event.event_id, "seq": r.sequence, "user_id": event.user_id,
                                 # one string attribute, not a list of numbers: cheaper to write and read back
                                 "status": "accepted", "ts": event.timestamp,
                                 "features": json.dumps(features, separators=(",", ":")), "late": is_late,
                                 "expires_at": int(now + LEDGER_TTL_SECONDS)})
    for r in rejected:
        ledger_items.append(_rejection(r, now))

    store.batch_put(settings.events_table, ledger_items, ("event_id",))
    store.batch_put(settings.features_table, [
        {"user_id": u, "feature_set": feature_set, "state": states[u].to_json(), "last_seq": str(last_seq[u]),
         "features": named(states[u].latest, feature_set) if states[u].latest else {},
         "total_events": states[u].total_events, "late_events": states[u].late_events, "updated_at": now}
        for u in touched], ("user_id", "feature_set"))
    tally["events_rejected"] = sum(1 for r in rejected if int(r.sequence) > counted)
    if int(records[-1].sequence) > counted:
        store.add_counters(settings.state_table, counters_key(records[0].shard_id), tally,
                           mark=("counted_seq", counted_mark, records[-1].sequence))

    execution_arn = None
    batch_id = batch_id_for(records)
    if rows:
        execution_arn = start_inference(rows, batch_id, settings, feature_set, stream_stats={
            "events": len(records), "bytes": sum(r.size for r in records),
            "seconds": time.time() - started, "memory_mb": _memory_mb(),
            "ddb_reads": len(valid) + len(users), "ddb_writes": len(ledger_items) + len(touched) + 1})
    return BatchOutcome(batch_id, len(rows), duplicates, len(rejected), execution_arn, late)


def _rejection(r: StreamRecord, now: float) -> dict:
    event_id = None
    try:
        event_id = json.loads(r.raw).get("event_id")
    except (ValueError, AttributeError):
        pass
    key = f"rejected#{r.shard_id}#{r.sequence}" if not isinstance(event_id, str) or not event_id \
        else f"rejected#{event_id}#{r.sequence}"
    return {"event_id": key, "seq": r.sequence, "status": "rejected", "errors": r.errors, "raw": r.raw,
            "rejected_at": now, "expires_at": int(now + LEDGER_TTL_SECONDS)}


def _memory_mb() -> int:
    return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)


def start_inference(rows: list[dict], batch_id: str, settings: Settings, feature_set: str,
                    stream_stats: dict) -> str:
    """Start one inference execution for the batch; rows go through S3 when the input would be too large."""
    execution_input: dict[str, Any] = {
        "batch_id": batch_id, "created_at": time.time(), "feature_set": feature_set,
        "model_version": settings.model_version, "stages": [dict(stream_stats, stage="process_stream")],
        "rows": rows, "rows_s3_uri": None}
    body = json.dumps(execution_input, separators=(",", ":"))
    if len(body) > MAX_INLINE_INPUT_BYTES:
        key = f"batches/{batch_id}.json"
        aws.client("s3").put_object(Bucket=settings.artifacts_bucket, Key=key,
                                    Body=json.dumps(rows, separators=(",", ":")).encode())
        execution_input.update(rows=[], rows_s3_uri=f"s3://{settings.artifacts_bucket}/{key}")
        body = json.dumps(execution_input, separators=(",", ":"))
    sfn = aws.client("stepfunctions")
    try:
        return sfn.start_execution(stateMachineArn=settings.state_machine_arn, name=batch_id,
                                   input=body)["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists:
        # A redelivered batch whose inference already started (Standard workflows and the local cloud dedupe
        # by name; Express re-runs it, which is safe because every write downstream is keyed by event_id).
        return f"{settings.state_machine_arn.replace(':stateMachine:', ':execution:')}:{batch_id}"
