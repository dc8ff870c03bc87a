"""Reconciliation: find the batches that were started but never reached predictions (issue 11), and re-drive them.

process_stream writes every batch's journal (``journal/<hour>/<shard>/<batch_id>.json``, pipeline/stream.py) before
it starts the batch's Express execution. An Express execution that times out (5 minutes) runs no Catch: its batch is
neither stored nor quarantined, and nothing else notices. This module lists the journals of the last hours, skips
the young ones (their execution may still be running or retrying), and checks that every journaled row has a
prediction (PREDICTIONS_TABLE is keyed by event_id). A batch with a row without a prediction is reported and, with
``redrive=True``, started again with its journal as the input.

What "missing" covers:
- a timed-out (or otherwise lost) execution: nothing of the batch was stored, or only part of it when the time ran
  out inside StorePredictions.
- a quarantined batch (the state machine's Catch): it has no predictions either, so it shows as missing too. It is
  in the quarantine queue and is redriven from there; re-driving it here as well stores the same predictions again
  (overwrites) but counts its events twice in the "stats" counters and writes a second cost record.

Re-driving the whole batch, not only its missing rows: every write downstream is keyed by event_id (predictions
overwrite), and a batch with some rows stored is one whose StorePredictions never reached its counter update (the
predictions are written first), so the re-run counts the batch once. A row can also have its prediction from
another batch (a redelivered record journaled again): it is checked by event_id all the same.

Redrive (issue 13, scripts/redrive.py) is at the end: the quarantine queue's batches and the stream DLQ's ranges.

Cost: one S3 LIST per 1,000 journals, one GET per journal past the grace period and one eventually consistent
BatchGetItem (projection event_id) per 100 rows. Plain functions; clients are made on first use (pipeline/aws.py).
"""
from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from . import aws, store, stream
from .settings import Settings, settings as current_settings

GRACE_SECONDS = 600          # past the Express 5-minute limit, plus the event source mapping's retries
MAX_JOURNALS = 10_000        # journals examined per run (the listing stops there: ``truncated``)
KEYS_PER_LOOKUP = 1_000      # event ids gathered across journals before they are looked up (100 per BatchGetItem)


@dataclass
class MissingBatch:
    batch_id: str
    key: str                  # the journal's S3 key
    rows: int
    missing: int              # rows without a prediction
    created_at: float | None
    execution_arn: str | None = None   # the re-drive's execution, when re-driven


@dataclass
class Report:
    hours: float
    grace_seconds: float
    listed: int = 0           # journals listed in the window
    young: int = 0            # skipped: younger than the grace period
    done: int = 0             # every row has a prediction (a batch with no rows, all duplicates, counts here)
    unreadable: int = 0       # gone between the listing and the read, or not a journal
    truncated: bool = False   # the listing stopped at max_journals
    missing: list[MissingBatch] = field(default_factory=list)

    @property
    def redriven(self) -> list[MissingBatch]:
        return [b for b in self.missing if b.execution_arn]

    def summary(self) -> dict:
        return {"hours": self.hours, "grace_seconds": self.grace_seconds, "journals": self.listed,
                "young": self.young, "done": self.done, "unreadable": self.unreadable, "truncated": self.truncated,
                "missing_batches": len(self.missing), "missing_rows": sum(b.missing for b in self.missing),
                "redriven": len(self.redriven)}

    def to_dict(self) -> dict:
        return self.summary() | {"batches": [asdict(b) for b in self.missing]}


def list_journals(settings: Settings, hours: float, now: float,
                  max_journals: int = MAX_JOURNALS) -> tuple[list[tuple[str, float]], bool]:
    """(key, last modified epoch) of the journals of the window, oldest hour first: one paginated listing per hour
    prefix, at most ``max_journals`` (and whether it stopped there)."""
    s3 = aws.client("s3")
    found: list[tuple[str, float]] = []
    for prefix in stream.journal_hour_prefixes(hours, now):
        kwargs = {"Bucket": settings.artifacts_bucket, "Prefix": prefix}
        while True:
            response = s3.list_objects_v2(**kwargs)
            for obj in response.get("Contents", []):
                if not obj["Key"].endswith(".json"):
                    continue
                if len(found) >= max_journals:
                    return found, True
                found.append((obj["Key"], obj["LastModified"].timestamp()))
            if not response.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = response["NextContinuationToken"]
    return found, False


def batch_id_of(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def predicted(settings: Settings, event_ids: list[str]) -> set[str]:
    """The event ids that have a prediction (BatchGetItem, projection event_id, eventually consistent: the rows
    checked are past the grace period)."""
    items = store.batch_get(settings.predictions_table, [{"event_id": e} for e in event_ids],
                            attributes=("event_id",), consistent=False)
    return {item["event_id"] for item in items}


def reconcile(settings: Settings | None = None, hours: float = 24, grace_seconds: float = GRACE_SECONDS,
              max_journals: int = MAX_JOURNALS, redrive: bool = False, now: float | None = None,
              progress: Callable[[str], None] | None = None) -> Report:
    """Check the journals of the last ``hours`` older than ``grace_seconds``; report (and with ``redrive`` start
    again) every batch with a row without a prediction."""
    settings = settings or current_settings()
    now = time.time() if now is None else now
    say = progress or (lambda message: None)
    report = Report(hours=hours, grace_seconds=grace_seconds)
    listed, report.truncated = list_journals(settings, hours, now, max_journals)
    report.listed = len(listed)
    newest: dict[str, str] = {}  # batch id -> its newest journal (a redelivered batch is journaled again)
    for key, modified in listed:
        if modified > now - grace_seconds:
            report.young += 1
        else:
            newest[batch_id_of(key)] = key
    say(f"{report.listed} journals in {len(stream.journal_hour_prefixes(hours, now))} hour prefixes"
        f"{' (truncated)' if report.truncated else ''}; {report.young} younger than {grace_seconds:g} s")

    pending: list[tuple[str, str, dict]] = []
    keys_pending = 0

    def check() -> None:
        nonlocal keys_pending
        have = predicted(settings, [r["event_id"] for _, _, journal in pending for r in journal["rows"]])
        for batch_id, key, journal in pending:
            rows = journal["rows"]
            missing = sum(r["event_id"] not in have for r in rows)
            if not missing:
                report.done += 1
                continue
            batch = MissingBatch(batch_id, key, len(rows), missing, journal.get("created_at"))
            report.missing.append(batch)
            say(f"missing: {batch_id} {missing}/{len(rows)} rows without a prediction ({key})")
            if redrive:
                batch.execution_arn = redrive_batch(settings, batch_id, key, journal)
                say(f"  redriven: {batch.execution_arn}")
        pending.clear()
        keys_pending = 0

    for checked, (batch_id, key) in enumerate(newest.items(), 1):
        journal = stream.read_journal(settings, key)
        if not isinstance(journal, dict) or not isinstance(journal.get("rows"), list):
            report.unreadable += 1
            continue
        pending.append((batch_id, key, journal))
        keys_pending += len(journal["rows"])
        if keys_pending >= KEYS_PER_LOOKUP:
            check()
        if checked % 500 == 0:
            say(f"{checked}/{len(newest)} journals checked")
    if pending:
        check()
    return report


def redrive_batch(settings: Settings, batch_id: str, key: str, journal: dict) -> str:
    """Start a new execution for a journaled batch, its input pointing to the journal (as process_stream does for
    a batch too large to pass inline). Named ``<batch_id>-r<unix time>``: execution names are unique."""
    return stream.start_inference(
        [], batch_id, settings, journal.get("feature_set") or settings.feature_set,
        stream_stats={"events": len(journal["rows"]), "bytes": 0, "seconds": 0.0, "memory_mb": 0, "s3_puts": 0,
                      "redrive_of": key},
        journal=key, name=f"{batch_id}-r{int(time.time())}", by_reference=True)


# -- redrive: the quarantine queue and the stream DLQ (issue 13) ---------------------------------------------------
# Both rely on the exactly-once effect: predictions are keyed by event_id and overwrite, and process_stream knows a
# record it has applied (the user's position) and scores it from the batch journal, so replaying a batch or a
# sequence range that was partly done before stores every event once.

@dataclass
class Replayed:
    source: str               # "quarantine" or "dlq"
    what: str                 # batch id, or shard:first-last
    events: int
    detail: str               # the execution started, or the invocation's outcome
    ok: bool
    message_id: str = ""


def receive_all(queue_url: str, hold_seconds: int = 300) -> list[dict]:
    """Every message of a queue, each once, held invisible for ``hold_seconds`` (redrive deletes what it replayed;
    the rest shows again when the hold ends)."""
    sqs = aws.client("sqs")
    messages: dict[str, dict] = {}
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=hold_seconds,
                                    WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return list(messages.values())
        for message in batch:
            messages.setdefault(message["MessageId"], message)


def find_journal(settings: Settings, batch_id: str, around: float, hours: float = 2) -> str | None:
    """The journal key of ``batch_id``, written within ``hours`` of ``around`` (any shard)."""
    keys, _ = list_journals(settings, 2 * hours, around + hours * 3600)
    return next((key for key, _modified in reversed(keys) if batch_id_of(key) == batch_id), None)


def redrive_quarantined(settings: Settings, queue_url: str, say: Callable[[str], None] = lambda m: None
                        ) -> list[Replayed]:
    """Start every quarantined batch again and delete its message once the execution started (a run that fails
    again is quarantined again by the state machine's Catch). A batch that failed in InvokeModel carries its
    input (rows inline or the journal's URI) and restarts from it; one that failed later carries predictions
    without features, so it restarts from its journal."""
    done: list[Replayed] = []
    messages = receive_all(queue_url)
    try:
        _redrive_quarantined(settings, messages, queue_url, done, say)
    finally:
        release(queue_url, messages, done)
    return done


def release(queue_url: str, messages: list[dict], done: list[Replayed]) -> None:
    """Make the messages that were not replayed (and so not deleted) visible again at once."""
    left = [m for m in messages if m["MessageId"] not in {r.message_id for r in done if r.ok}]
    for start in range(0, len(left), 10):
        aws.client("sqs").change_message_visibility_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(left[start:start + 10])])


def _redrive_quarantined(settings: Settings, messages: list[dict], queue_url: str, done: list[Replayed],
                         say: Callable[[str], None]) -> None:
    sqs = aws.client("sqs")
    for message in messages:
        try:
            state = json.loads(message["Body"])
            batch_id = state["batch_id"]
        except (ValueError, KeyError, TypeError):
            done.append(Replayed("quarantine", message["MessageId"], 0, "not a batch state", False))
            continue
        name = f"{batch_id}-q{int(time.time() * 1000)}"
        try:
            if state.get("rows") or state.get("rows_s3_uri"):
                body = {k: v for k, v in state.items() if k != "error"}
                events = len(state.get("rows") or []) or None
                arn = aws.client("stepfunctions").start_execution(
                    stateMachineArn=settings.state_machine_arn, name=name, input=json.dumps(body))["executionArn"]
            else:
                key = find_journal(settings, batch_id, float(state.get("created_at") or time.time()))
                if key is None:
                    done.append(Replayed("quarantine", batch_id, 0, "its batch journal is gone", False))
                    continue
                journal = stream.read_journal(settings, key) or {"rows": []}
                events = len(journal["rows"])
                arn = stream.start_inference(
                    [], batch_id, settings, journal.get("feature_set") or settings.feature_set,
                    stream_stats={"events": events, "bytes": 0, "seconds": 0.0, "memory_mb": 0, "s3_puts": 0,
                                  "redrive_of": key}, journal=key, name=name, by_reference=True)
        except Exception as exc:  # noqa: BLE001 - reported, the message stays for the next run
            done.append(Replayed("quarantine", batch_id, 0, f"{type(exc).__name__}: {exc}", False))
            continue
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        done.append(Replayed("quarantine", batch_id, events or 0, arn, True, message["MessageId"]))
        say(f"quarantine: {batch_id} restarted as {arn}")


def kinesis_event(records: list[dict], shard_id: str, stream_arn: str, region: str) -> dict:
    """The Lambda event the Kinesis event source mapping would deliver for these GetRecords records."""
    return {"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"], "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp()},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard_id}:{r['SequenceNumber']}",
        "eventName": "aws:kinesis:record", "invokeIdentityArn": "", "awsRegion": region,
        "eventSourceARN": stream_arn} for r in records]}


def read_range(stream_arn: str, shard_id: str, first: str, last: str) -> list[dict]:
    """The records of a shard from sequence number ``first`` to ``last`` (what is left of them in the stream)."""
    kinesis = aws.client("kinesis")
    iterator = kinesis.get_shard_iterator(StreamName=stream_arn.split("/", 1)[1], ShardId=shard_id,
                                          ShardIteratorType="AT_SEQUENCE_NUMBER",
                                          StartingSequenceNumber=first)["ShardIterator"]
    found: list[dict] = []
    while iterator:
        response = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        for record in response["Records"]:
            if int(record["SequenceNumber"]) > int(last):
                return found
            found.append(record)
        if not response["Records"] and not response.get("MillisBehindLatest"):
            return found
        iterator = response.get("NextShardIterator")
    return found


def redrive_dlq(settings: Settings, queue_url: str, say: Callable[[str], None] = lambda m: None
                ) -> list[Replayed]:
    """Replay every stream DLQ record: an on-failure record names a shard's sequence range (KinesisBatchInfo), not
    the records, so they are read back from the stream (while it retains them) and handed to the mapping's
    function as the mapping would; the message is deleted when no record failed."""
    done: list[Replayed] = []
    messages = receive_all(queue_url)
    try:
        _redrive_dlq(messages, queue_url, done, say)
    finally:
        release(queue_url, messages, done)
    return done


def _redrive_dlq(messages: list[dict], queue_url: str, done: list[Replayed], say: Callable[[str], None]) -> None:
    sqs, lambda_ = aws.client("sqs"), aws.client("lambda")
    functions: dict[str, str] = {}
    for message in messages:
        try:
            info = json.loads(message["Body"])["KinesisBatchInfo"]
            stream_arn, shard = info["streamArn"], info["shardId"]
            first, last = info["startSequenceNumber"], info["endSequenceNumber"]
        except (ValueError, KeyError, TypeError):
            done.append(Replayed("dlq", message["MessageId"], 0, "not a Kinesis on-failure record", False))
            continue
        what = f"{shard}:{first}-{last}"
        try:
            records = read_range(stream_arn, shard, first, last)
            if len(records) < int(info.get("batchSize", len(records))):
                done.append(Replayed("dlq", what, len(records), f"only {len(records)} of {info.get('batchSize')} "
                                     "records are still in the stream (retention)", False))
                continue
            if stream_arn not in functions:
                mappings = lambda_.list_event_source_mappings(EventSourceArn=stream_arn)["EventSourceMappings"]
                functions[stream_arn] = mappings[0]["FunctionArn"]
            region = stream_arn.split(":")[3]
            response = lambda_.invoke(FunctionName=functions[stream_arn],
                                      Payload=json.dumps(kinesis_event(records, shard, stream_arn, region)))
            payload = json.loads(response["Payload"].read() or b"{}")
        except Exception as exc:  # noqa: BLE001 - reported, the message stays for the next run
            done.append(Replayed("dlq", what, 0, f"{type(exc).__name__}: {exc}", False))
            continue
        failures = (payload or {}).get("batchItemFailures") if isinstance(payload, dict) else None
        if response.get("FunctionError") or failures:
            done.append(Replayed("dlq", what, len(records), f"the function failed: {str(payload)[:300]}", False))
            continue
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        done.append(Replayed("dlq", what, len(records), f"processed by {functions[stream_arn]}", True,
                             message["MessageId"]))
        say(f"dlq: {what} ({len(records)} records) processed")
