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

Cost: one S3 LIST per 1,000 journals, one GET per journal past the grace period and one eventually consistent
BatchGetItem (projection event_id) per 100 rows. Plain functions; clients are made on first use (pipeline/aws.py).
"""
from __future__ import annotations

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
