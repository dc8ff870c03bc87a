"""process_stream: Kinesis records -> validated events -> dedupe -> per-user features -> one inference run.

Storage per batch (README "Exactly once" and "Storage"): no item per event.
- each user's feature state is two items of the features table (pipeline/features.py): the "hot" part (fine
  tiles, counters, newest vector), rewritten on every batch that touches the user and about 1 KB at most, and the
  "cold" part (hourly tiles), rewritten only when tiles roll up (about once an hour). The hot item also carries,
  packed in one attribute (``pos``), the position (shard, sequence number) of the last record applied to the user
  and the dedupe ring (short hashes of the user's last ``DEDUPE_RING`` event ids).
- the batch journal: one S3 object per batch (``journal/<hour>/<shard>/<batch_id>.json``) with every record's
  outcome (its row and features, a duplicate, late) — the execution's input when the rows are too large to pass
  inline, the source a redelivered record is scored from, and the drift monitor's sample.
- the stream counters (processed, rejected, duplicate, late, users) live on one item per shard with
  ``counted_seq`` (the last sequence number counted) and ``journal`` (the last batches' journal keys and sequence
  ranges). One conditional UpdateItem adds a batch's counts, moves the mark and records the journal, so a
  redelivered record is never counted twice (GET /stats sums the shards).

Exactly-once effect on redelivery (a batch retried after a partial failure or a crash):
- a record at or before the position already applied to its user (same shard) is a redelivery: its outcome and
  features are read back from the journal of the batch that applied it; the state is not touched again.
- an event id in the user's dedupe ring (or twice in one batch) under a new record is a client duplicate: skipped.
  The ring is the dedupe horizon: a client retry of one of the user's last ``DEDUPE_RING`` events is caught.
Writes go journal (S3) -> counters and journal list -> feature states -> StartExecution, so a crash between any two
steps is repaired by the retry.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import repeat
from typing import Any, Iterable, cast

from . import aws, store
from .events import Event, validate_event
from .features import FeatureState, StaleColdState, feature_names
from .flow import ExecutionHead, Stage
from .settings import Settings, function_memory_mb
from .warm import WARM, Kept

REJECTED_TTL_SECONDS = 7 * 24 * 3600
MAX_INLINE_INPUT_BYTES = 200_000  # Step Functions caps state input at 256 KB
RAW_KEEP_BYTES = 2048
DEDUPE_RING = 24                  # event ids remembered per user (8-byte hashes in the hot item)
ID_HASH_BYTES = 8
JOURNAL_KEEP = 16                 # batches of a shard whose journal keys the counters item remembers
COLD_SUFFIX = "#cold"
SIX_DIGITS = repeat(6)            # features are rounded to 6 digits in the rows (map(round, ...) runs in C)
JOURNAL_PREFIX = "journal/"


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
    except (ValueError, RecursionError) as exc:  # not UTF-8 or JSON, an integer too long, nesting too deep
        result.errors = [f"record: not valid JSON ({exc.__class__.__name__})"]
        result.raw = data[:RAW_KEEP_BYTES].decode("utf-8", "replace")
        return result
    result.event, result.errors = validate_event(payload, now=now, arrival=result.arrival)
    partition_key = kinesis.get("partitionKey")
    if result.event is not None and partition_key is not None and partition_key != result.event.user_id:
        # A user's state and dedupe ring have one writer only because all their records share a partition key,
        # hence a shard, read in order by one invocation at a time. Another key could put the user on two shards
        # at once: lost state updates, and a duplicate processed twice.
        result.event, result.errors = None, [f"partitionKey: {partition_key[:64]!r} is not the event's user_id "
                                             "(write each record with PartitionKey=user_id)"]
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


def id_hash(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=ID_HASH_BYTES).digest()


@dataclass
class UserState:
    """One user's stored state, as read from the features table and written back."""
    features: FeatureState
    shard: str = ""
    applied_seq: int = -1                       # the last record applied to this user (on ``shard``)
    ring: list[bytes] = field(default_factory=list)
    new: bool = True                            # no state was stored for the user before this batch

    def applied(self, record: "StreamRecord") -> bool:
        return record.shard_id == self.shard and int(record.sequence) <= self.applied_seq

    def advance(self, record: "StreamRecord") -> None:
        """``record`` is now applied to the user (a duplicate too: its redelivery is then recognised)."""
        self.shard, self.applied_seq = record.shard_id, int(record.sequence)

    def remember(self, record: "StreamRecord", event_id: str) -> None:
        self.advance(record)
        self.ring.append(id_hash(event_id))
        del self.ring[:-DEDUPE_RING]


def hot_key(user_id: str, feature_set: str) -> dict:
    return {"user_id": user_id, "feature_set": feature_set}


def cold_key(user_id: str, feature_set: str) -> dict:
    return {"user_id": user_id, "feature_set": feature_set + COLD_SUFFIX}


def _typed_key(key: dict) -> dict:
    return {name: {"S": value} for name, value in key.items()}


def pack_position(shard: str, applied_seq: int, ring: list[bytes]) -> bytes:
    """The hot item's ``pos`` attribute: "<shard>/<sequence>\\n" then the ring's hashes (a shard id and a sequence
    number hold no "/" or newline). One attribute, not three: botocore's work grows with every typed value it
    serialises and parses, and this item is written and read for every user of every batch."""
    return f"{shard}/{applied_seq}\n".encode() + b"".join(ring)


def unpack_position(pos: bytes) -> tuple[str, int, list[bytes]]:
    head, _, ring = pos.partition(b"\n")
    shard, _, seq = head.decode().partition("/")
    return shard, int(seq), [ring[i:i + ID_HASH_BYTES] for i in range(0, len(ring), ID_HASH_BYTES)]


def hot_read(settings: Settings, users: Iterable[str], feature_set: str) -> store.Read:
    """The users' hot items, strongly consistent, the attributes ``load_users`` needs."""
    return store.raw_read(settings.features_table, [_typed_key(hot_key(u, feature_set)) for u in users],
                          attributes=("user_id", "hot", "pos"))


def load_users(settings: Settings, users: set[str], feature_set: str,
               hot_items: list[dict] | None = None) -> dict[str, UserState]:
    """The users' hot items (``hot_read``; ``hot_items`` when the caller read them already), then the cold items
    the hot ones name (eventually consistent: a cold item changes about once an hour; a stale copy is detected by
    its version and read again strongly). Through the low-level client: these few attributes are read and written
    on every batch."""
    if hot_items is None:
        [hot_items] = store.batch_get_raw(hot_read(settings, users, feature_set))
    states: dict[str, UserState] = {}
    for item in hot_items:
        shard, applied_seq, ring = unpack_position(item["pos"]["B"]) if "pos" in item else ("", -1, [])
        states[item["user_id"]["S"]] = UserState(
            FeatureState.from_bytes(item["hot"]["B"] if "hot" in item else None, None, feature_set, hot_only=True),
            shard=shard, applied_seq=applied_seq, ring=ring, new=False)
    for user in users - states.keys():  # first seen
        states[user] = UserState(FeatureState(feature_set))
    need_cold = [u for u, state in states.items() if state.features.cold_version]
    [cold_items] = store.batch_get_raw(store.raw_read(
        settings.features_table, [_typed_key(cold_key(u, feature_set)) for u in need_cold],
        attributes=("user_id", "cold"), consistent=False))
    cold = {item["user_id"]["S"]: item["cold"]["B"] for item in cold_items if "cold" in item}
    for user in need_cold:
        try:
            states[user].features.attach_cold(cold.get(user))
        except StaleColdState:
            fresh = store.get_item(settings.features_table, cold_key(user, feature_set)) or {}
            states[user].features.attach_cold(fresh.get("cold"))
    return states


def user_items(user_id: str, user: UserState, feature_set: str, now: float) -> list[dict]:
    """The items to write for one user (typed): the hot item always, the cold item when its tiles changed."""
    cold_changed = user.features.mark_stored()
    hot = _typed_key(hot_key(user_id, feature_set)) | {
        "hot": {"B": user.features.to_bytes()}, "pos": {"B": pack_position(user.shard, user.applied_seq, user.ring)},
        "at": {"N": str(int(now))}}
    items = [hot]
    if cold_changed:
        items.append(_typed_key(cold_key(user_id, feature_set)) | {"cold": {"B": user.features.cold_bytes()}})
    return items


def journal_hour_prefix(when: float) -> str:
    """The prefix of the journals written in ``when``'s UTC hour: journal/YYYY-MM-DDTHH/."""
    return JOURNAL_PREFIX + datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H") + "/"


def journal_hour_prefixes(hours: float, now: float) -> list[str]:
    """The journal prefixes (one per UTC hour) from ``hours`` before ``now`` to ``now``'s hour, oldest first."""
    return [journal_hour_prefix(h * 3600) for h in range(int((now - hours * 3600) // 3600), int(now // 3600) + 1)]


def journal_key(shard_id: str, batch_id: str, now: float) -> str:
    return f"{journal_hour_prefix(now)}{shard_id}/{batch_id}.json"


class Journals:
    """The journals of earlier batches of a shard, read on demand (only redelivered records need them)."""

    def __init__(self, settings: Settings, entries: list[dict]):
        self._settings, self._entries = settings, entries
        self._loaded: dict[str, Any] = {}

    def outcome(self, sequence: str) -> dict | None:
        seq = int(sequence)
        for entry in reversed(self._entries):
            if int(entry["first"]) <= seq <= int(entry["last"]):
                if entry["key"] not in self._loaded:
                    self._loaded[entry["key"]] = read_journal(self._settings, entry["key"])
                found = self._loaded[entry["key"]]
                if found is not None and sequence in found["records"]:
                    return found["records"][sequence] | (
                        {"row": found["rows"][found["records"][sequence]["row"]]}
                        if "row" in found["records"][sequence] else {})
        return None


def read_journal(settings: Settings, key: str) -> dict | None:
    """A batch journal, None when it is gone (expired)."""
    return aws.get_json(settings.artifacts_bucket, key, missing_ok=True)


def process(records: list[StreamRecord], settings: Settings, started: float | None = None) -> BatchOutcome:
    """Everything after decoding, for the records of one batch, in sequence order: read the shard's counters and
    the users' states, apply the records, write journal -> counters -> states (that order is what makes a retry
    after a crash anywhere repair the batch), then start the batch's inference."""
    started = started if started is not None else time.time()
    now = time.time()
    if not records:
        return BatchOutcome(None, 0, 0, 0, None)
    feature_names(settings.feature_set)  # an unknown set fails loudly before anything is written
    batch_id = batch_id_for(records)
    warm_key = (settings.features_table, settings.feature_set, records[0].shard_id)
    kept = WARM.take(warm_key)  # ours until the states are written: a failure anywhere drops them (pipeline/warm.py)
    with store.metered() as meter:
        counters, users, kept = _read(records, settings, kept)
        counted = int(counters["counted_seq"]) if counters.get("counted_seq") is not None else -1
        applied = _apply(records, users, Journals(settings, counters.get("journal", [])), counted, now)
        key = journal_key(records[0].shard_id, batch_id, now)
        rows_json = json.dumps(applied.rows, separators=(",", ":"))  # once: the journal and the execution input
        aws.put_json_text(settings.artifacts_bucket, key, with_rows({
            "batch_id": batch_id, "shard": records[0].shard_id, "first": records[0].sequence,
            "last": records[-1].sequence, "feature_set": settings.feature_set, "created_at": now,
            "records": applied.outcomes}, rows_json))
        counters = _count(records, settings, counters, counted, applied, key)
        store.batch_put_raw(settings.features_table, [item for u in applied.touched
                                                      for item in user_items(u, users[u], settings.feature_set, now)])
        for u in applied.touched:
            users[u].new = False
        WARM.keep(warm_key, warm_mark(counters), users, before=kept)
        rejections = [_rejection(r, now) for r in records if r.event is None]
        if rejections:
            store.batch_put(settings.events_table, rejections, ("event_id",))

    execution_arn = None
    if applied.rows:
        stats = {"events": len(records), "bytes": sum(r.size for r in records), "seconds": time.time() - started,
                 "memory_mb": function_memory_mb(), "ddb_rru": meter.rru, "ddb_wru": meter.wru, "s3_puts": 1}
        execution_arn = start_inference(applied.rows, batch_id, settings, settings.feature_set, stats, journal=key,
                                        rows_json=rows_json)
    valid = sum(r.event is not None for r in records)
    return BatchOutcome(batch_id, len(applied.rows), applied.duplicates, len(records) - valid, execution_arn,
                        applied.late)


def _read(records: list[StreamRecord], settings: Settings, kept: Kept | None
          ) -> tuple[dict[str, Any], dict[str, UserState], Kept | None]:
    """The shard's counters and the batch's users' states: the ones kept warm while the counters show this
    environment wrote them last (``kept`` is dropped otherwise), the others read (their hot items in the same
    BatchGetItem as the counters, strongly consistent)."""
    shard_id, feature_set = records[0].shard_id, settings.feature_set
    user_ids = {r.event.user_id for r in records if r.event is not None}
    cached = {u: kept.users[u] for u in user_ids if u in kept.users} if kept else {}
    to_read = user_ids - cached.keys()
    counters_found, hot_items = store.batch_get_raw(
        store.raw_read(settings.state_table, [{"pk": {"S": counters_key(shard_id)}}]),
        hot_read(settings, to_read, feature_set))
    counters: dict[str, Any] = (store.from_raw(counters_found[0]) if counters_found
                                else {"pk": counters_key(shard_id)})
    if kept is not None and kept.mark != warm_mark(counters):  # another invocation wrote the shard's states since
        kept = None
        if cached:
            [more] = store.batch_get_raw(hot_read(settings, cached.keys(), feature_set))
            hot_items, to_read, cached = hot_items + more, user_ids, {}
    return counters, load_users(settings, to_read, feature_set, hot_items) | cached, kept


@dataclass
class Applied:
    """What applying a batch's records decided: the counts, the rows to score, each record's outcome."""
    tally: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("events_processed_by_stream", "events_rejected", "events_duplicate", "events_late", "users_tracked"), 0))
    rows: list[dict] = field(default_factory=list)
    outcomes: dict[str, dict] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    duplicates: int = 0
    late: int = 0


def _apply(records: list[StreamRecord], users: dict[str, UserState], journals: Journals, counted: int,
           now: float) -> Applied:
    """Each record in sequence order (= arrival order within the shard): a redelivery reuses what its first
    delivery decided, a client duplicate is skipped, anything else updates its user's features. Only records past
    the counted mark add to the counts."""
    done = Applied()
    seen_in_batch: set[str] = set()
    for r in records:
        new_record = int(r.sequence) > counted
        if r.event is None:
            done.tally["events_rejected"] += new_record
            continue
        event, user = r.event, users[r.event.user_id]
        if user.applied(r):  # redelivered: reuse what the first delivery decided
            found = journals.outcome(r.sequence)
            before = found if found is not None else _rescore(event, user, r)
        elif event.event_id in seen_in_batch or id_hash(event.event_id) in user.ring:
            before = {"duplicate": True}  # a client retry of an event we already have
            user.advance(r)
            done.touched.add(event.user_id)
        else:
            done.tally["users_tracked"] += new_record and user.new and event.user_id not in done.touched
            observed = user.features.observe(event)
            user.remember(r, event.event_id)
            done.touched.add(event.user_id)
            before = {"late": observed.late, "row": {
                "event_id": event.event_id, "user_id": event.user_id, "ts": event.timestamp,
                "ingest_ts": event.ingest_ts or r.arrival or now,
                "features": list(map(round, observed.features, SIX_DIGITS))}}
        seen_in_batch.add(event.event_id)
        if before.get("duplicate"):
            done.duplicates += 1
            done.tally["events_duplicate"] += new_record
            done.outcomes[r.sequence] = {"duplicate": True}
            continue
        late = bool(before.get("late"))
        done.late += late
        done.tally["events_processed_by_stream"] += new_record
        done.tally["events_late"] += new_record and late
        done.outcomes[r.sequence] = {"row": len(done.rows), "late": late}
        done.rows.append(before["row"])
    return done


def _count(records: list[StreamRecord], settings: Settings, counters: dict[str, Any], counted: int,
           applied: Applied, journal_key_: str) -> dict[str, Any]:
    """Add the batch's counts, move the counted mark and remember its journal, in one conditional UpdateItem
    (exactly once); a redelivered batch that still writes states bumps ``state_gen`` instead (pipeline/warm.py).
    Returns the counters item as the update leaves it."""
    shard_id, last = records[0].shard_id, records[-1].sequence
    if int(last) > counted:
        entry = {"key": journal_key_, "first": records[0].sequence, "last": last}
        journal = (counters.get("journal", []) + [entry])[-JOURNAL_KEEP:]
        # the item as the update leaves it (the mark's condition proves it is still the one read above)
        after = counters | {name: counters.get(name, 0) + n for name, n in applied.tally.items() if n} | {
            "counted_seq": last, "journal": journal}
        store.add_counters(settings.state_table, counters_key(shard_id), applied.tally,
                           mark=("counted_seq", counters.get("counted_seq"), last),
                           set_values={"journal": journal}, size_after=store.item_size(after))
        return after
    if applied.touched:  # a redelivered batch that still writes states: tell the environments keeping them warm
        store.add_counters(settings.state_table, counters_key(shard_id), {"state_gen": 1})
        return counters | {"state_gen": counters.get("state_gen", 0) + 1}
    return counters


def warm_mark(counters: dict) -> tuple:
    """What a shard's counters item says about who wrote its users' states last (pipeline/warm.py)."""
    return counters.get("counted_seq"), int(counters.get("state_gen", 0))


def _rescore(event: Event, user: UserState, record: StreamRecord) -> dict:
    """A redelivered record whose journal is gone (past JOURNAL_KEEP batches of its shard): score it on a copy of
    the state as it is now, without changing it (the state already holds it). Logged: it should not happen."""
    from .observability import logger

    logger.warning("redelivered record without a journal entry: rescored on the current state",
                   extra={"shard": record.shard_id, "sequence": record.sequence, "event_id": event.event_id})
    copy = FeatureState.from_bytes(user.features.to_bytes(), user.features.cold_bytes(),
                                   user.features.feature_set)
    return {"late": False, "row": {"event_id": event.event_id, "user_id": event.user_id, "ts": event.timestamp,
                                   "ingest_ts": event.ingest_ts or record.arrival,
                                   "features": [round(f, 6) for f in copy.add(event)]}}


def _rejection(r: StreamRecord, now: float) -> dict:
    """A rejected record, kept with its reasons (EVENTS_TABLE, keyed by its shard and sequence number)."""
    event_id = None
    try:
        event_id = json.loads(r.raw).get("event_id")
    except (ValueError, AttributeError, RecursionError):
        pass
    claimed = event_id.encode("utf-8", "replace").decode() if isinstance(event_id, str) else None  # no lone surrogates
    return {"event_id": f"rejected#{r.shard_id}#{r.sequence}", "seq": r.sequence, "status": "rejected",
            "claimed_event_id": claimed, "errors": r.errors, "raw": r.raw,
            "rejected_at": now, "expires_at": int(now + REJECTED_TTL_SECONDS)}


def with_rows(document: dict, rows_json: str) -> str:
    """``document`` as compact JSON with its "rows" given as JSON text already (serialised once per batch)."""
    head = json.dumps(document, separators=(",", ":"))[:-1] + ("," if document else "")
    return f'{head}"rows":{rows_json}}}'


def inference_input(rows: list[dict], batch_id: str, settings: Settings, feature_set: str, stream_stats: dict,
                    journal: str | None = None, by_reference: bool = False, rows_json: str | None = None) -> str:
    """The execution input (JSON) of a batch: the rows inline, or the S3 URI of the batch journal (``journal``) when
    the input would be too large or ``by_reference`` (a redrive of a journaled batch, pipeline/reconcile.py).
    ``rows_json``: the rows as JSON text, when the caller has it."""
    execution_input: ExecutionHead = {  # + "rows", added as JSON text (with_rows): a flow.ExecutionInput
        "batch_id": batch_id, "created_at": time.time(), "feature_set": feature_set,
        "model_version": settings.model_version, "stages": [cast(Stage, dict(stream_stats, stage="process_stream"))],
        "rows_s3_uri": None}
    rows_json = rows_json if rows_json is not None else json.dumps(rows, separators=(",", ":"))
    body = with_rows(dict(execution_input), rows_json)
    if (by_reference and journal is not None) or len(body) > MAX_INLINE_INPUT_BYTES:
        if journal is None:
            journal = f"batches/{batch_id}.json"
            aws.put_json_text(settings.artifacts_bucket, journal, with_rows({}, rows_json))
        execution_input["rows_s3_uri"] = f"s3://{settings.artifacts_bucket}/{journal}"
        body = with_rows(dict(execution_input), "[]")
    return body


def start_inference(rows: list[dict], batch_id: str, settings: Settings, feature_set: str,
                    stream_stats: dict, journal: str | None = None, name: str | None = None,
                    by_reference: bool = False, rows_json: str | None = None) -> str:
    """Start one inference execution for the batch (named ``name``, default the batch id); the rows travel inline,
    or as the batch journal's S3 key when the input would be too large (``inference_input``)."""
    body = inference_input(rows, batch_id, settings, feature_set, stream_stats, journal, by_reference, rows_json)
    name = name or batch_id
    sfn = aws.client("stepfunctions")
    try:
        return sfn.start_execution(stateMachineArn=settings.state_machine_arn, name=name,
                                   input=body)["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists:
        # A redelivered batch whose inference already started (Standard workflows and the local cloud dedupe
        # by name; Express re-runs it, which is safe because every write downstream is keyed by event_id).
        return f"{settings.state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
