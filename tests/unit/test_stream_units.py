"""pipeline/stream.py's parts one at a time, without a mocked account (the end-to-end behaviour is in
test_process_stream.py, test_stream_crashes.py and test_warm_states.py): decoding a Lambda record, the keys and the
packed position, applying a batch's records, counting them, the journal lookup, the rescoring of a record whose
journal is gone, the kept rejection, the execution input. Fast, so a mutation run (scripts/mutate.py) runs them
first."""
import base64
import hashlib
import json
import time
from dataclasses import fields

import pytest
from lambdakit import T0, local_time_zone

from pipeline import aws, store, stream
from pipeline.events import Event
from pipeline.features import FeatureState
from pipeline.settings import Settings
from pipeline.stream import StreamRecord, UserState

SHARD = "shardId-000000000007"


@pytest.fixture(autouse=True)
def _powertools(monkeypatch):
    """The environment the ``aws`` fixture sets for Powertools: ``_rescore`` imports pipeline.observability, whose
    Metrics, Logger and Tracer read it once, when first imported (these tests may be the first to import it)."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "test")


def _settings(**values) -> Settings:
    defaults = {f.name: (10 if f.type in (int, "int") else 1.0 if f.type in (float, "float") else f.name)
                for f in fields(Settings)}
    return Settings(**defaults | {"feature_set": "v1", "artifacts_bucket": "bucket", "model_version": "m-1",
                                  "state_machine_arn": "arn:aws:states:us-east-1:1:stateMachine:inference",
                                  "state_table": "state", "features_table": "features"} | values)


def _raw(payload, seq="42", shard=SHARD, partition_key=None, arrival=None, data=None) -> dict:
    kinesis = {"sequenceNumber": seq,
               "data": data if data is not None else base64.b64encode(
                   payload if isinstance(payload, bytes) else json.dumps(payload).encode()).decode()}
    if arrival is not None:
        kinesis["approximateArrivalTimestamp"] = arrival
    if partition_key is not None:
        kinesis["partitionKey"] = partition_key
    record = {"kinesis": kinesis}
    if shard is not None:
        record["eventID"] = f"{shard}:{seq}"
    return record


def _event(n: int, user: str = "u1", **more) -> dict:
    return {"event_id": f"e{n}", "user_id": user, "event_type": "view", "timestamp": T0 + n * 10} | more


def _record(n: int, seq: int, user: str = "u1", shard: str = SHARD, arrival: float = 0.0, **more) -> StreamRecord:
    return StreamRecord(sequence=str(seq), shard_id=shard, arrival=arrival, size=10,
                        event=Event.model_validate(_event(n, user, **more)))


def _bad(seq: int, shard: str = SHARD) -> StreamRecord:
    return StreamRecord(sequence=str(seq), shard_id=shard, arrival=0.0, size=3, errors=["bad"], raw="{x")


# -- decode ------------------------------------------------------------------------------------------------------
def test_decode_reads_the_record_and_its_shard():
    data = json.dumps(_event(1)).encode()
    r = stream.decode(_raw(_event(1), seq="123", shard="shardId-000000000003", partition_key="u1",
                           arrival=T0 + 5))
    assert (r.sequence, r.shard_id, r.arrival, r.size) == ("123", "shardId-000000000003", T0 + 5, len(data))
    assert r.event is not None and r.event.event_id == "e1" and r.errors == [] and r.raw == ""
    assert isinstance(r.arrival, float)
    # an eventID is "<shard>:<sequence>"; without one the shard is "shardId-unknown"
    assert stream.decode(_raw(_event(1), shard=None)).shard_id == "shardId-unknown"
    assert stream.decode(_raw(_event(1), shard="shardId-1:x:y")).shard_id == "shardId-1"
    missing = stream.decode(_raw(_event(1)))
    assert missing.arrival == 0.0 and missing.event is not None  # no arrival time, no partition key: accepted
    none = _raw(_event(1))
    none["kinesis"]["approximateArrivalTimestamp"] = None
    assert stream.decode(none).arrival == 0.0


def test_decode_rejects_what_is_not_base64_or_json_and_keeps_the_start_of_it():
    not_base64 = stream.decode(_raw(None, data="e30=!"))  # "{}" then a character outside the alphabet
    assert not_base64.event is None and not_base64.size == 0
    assert not_base64.errors == ["record: not valid JSON (JSONDecodeError)"] and not_base64.raw == ""
    long = stream.decode(_raw(b"\xff" + b"x" * 3000))
    assert long.errors == ["record: not valid JSON (UnicodeDecodeError)"] and long.size == 3001
    assert long.raw == "\ufffd" + "x" * (stream.RAW_KEEP_BYTES - 1)
    deep = stream.decode(_raw(b"[" * 100_000))
    assert deep.event is None and deep.errors == ["record: not valid JSON (RecursionError)"]
    assert deep.raw == "[" * stream.RAW_KEEP_BYTES
    invalid = stream.decode(_raw({"event_id": "x", "user_id": "u1"}))
    assert invalid.event is None and invalid.errors and "event_type" in " ".join(invalid.errors)
    assert json.loads(invalid.raw) == {"event_id": "x", "user_id": "u1"}
    # valid JSON, not a valid event, longer than what is kept: cut inside a two-byte character, which is replaced
    long_event = json.dumps({"event_id": "xy", "user_id": "\u00e9" * 2000}, ensure_ascii=False).encode()
    assert long_event[:stream.RAW_KEEP_BYTES].decode("utf-8", "replace").endswith("\ufffd")
    cut = stream.decode(_raw(long_event))
    assert cut.event is None and cut.raw == long_event[:stream.RAW_KEEP_BYTES].decode("utf-8", "replace")


def test_decode_applies_the_time_rules_from_now_and_the_arrival():
    old = _event(1)
    assert stream.decode(_raw(old), now=T0 + 40 * 86400).event is None       # more than 30 days before now
    # the arrival, not now, is when the stream accepted it
    assert stream.decode(_raw(old, arrival=T0 + 60), now=T0 + 40 * 86400).event is not None
    skewed = _event(1, ingest_ts=T0 + 10)
    assert stream.decode(_raw(skewed, arrival=T0 + 20), now=T0 + 20).event is not None
    assert stream.decode(_raw(skewed, arrival=T0 + 20 * 86400), now=T0 + 20 * 86400).event is None


def test_decode_rejects_a_partition_key_other_than_the_user():
    assert stream.decode(_raw(_event(1), partition_key="u1")).event is not None
    other = stream.decode(_raw(_event(1), partition_key="x" * 100))
    assert other.event is None and other.errors == [
        f"partitionKey: {'x' * 64!r} is not the event's user_id (write each record with PartitionKey=user_id)"]
    assert json.loads(other.raw)["event_id"] == "e1"


# -- ids, keys, positions -----------------------------------------------------------------------------------------
def test_batch_ids_and_event_id_hashes_are_deterministic():
    records = [_record(1, 100), _record(2, 101), _record(3, 102)]
    digest = hashlib.sha256(f"{SHARD}:100:102".encode()).hexdigest()
    assert stream.batch_id_for(records) == f"b-{digest[:32]}"
    assert stream.batch_id_for(records[:2]) != stream.batch_id_for(records)
    assert stream.id_hash("e1") == hashlib.blake2b(b"e1", digest_size=8).digest()
    assert len(stream.id_hash("e1")) == stream.ID_HASH_BYTES == 8


def test_keys_and_the_counters_key():
    assert stream.hot_key("u1", "v1") == {"user_id": "u1", "feature_set": "v1"}
    assert stream.cold_key("u1", "v1") == {"user_id": "u1", "feature_set": "v1#cold"}
    assert stream._typed_key({"a": "b", "c": "d"}) == {"a": {"S": "b"}, "c": {"S": "d"}}
    assert stream.counters_key(SHARD) == f"stream#{SHARD}"
    assert stream.pack_position("s", 7, [b"12345678"]) == b"s/7\n12345678"
    assert stream.unpack_position(b"s/7\n" + b"a" * 8 + b"b" * 8) == ("s", 7, [b"a" * 8, b"b" * 8])


def test_a_users_position_and_ring():
    user = UserState(FeatureState("v1"))
    assert (user.shard, user.applied_seq, user.ring, user.new) == ("", -1, [], True)
    user.advance(_record(1, 100))
    assert (user.shard, user.applied_seq) == (SHARD, 100)
    assert user.applied(_record(1, 100)) and user.applied(_record(1, 99)) and not user.applied(_record(1, 101))
    assert not user.applied(_record(1, 50, shard="shardId-other"))
    for n in range(stream.DEDUPE_RING + 2):
        user.remember(_record(n, 200 + n), f"e{n}")
    assert user.applied_seq == 200 + stream.DEDUPE_RING + 1
    assert user.ring == [stream.id_hash(f"e{n}") for n in range(2, stream.DEDUPE_RING + 2)]


def test_a_hot_item_without_a_position_or_tiles_loads_as_a_user_with_nothing_applied(monkeypatch):
    """A hot item holding less than user_items writes (no "pos": no record applied on any shard yet; no "hot": no
    tiles) loads as a stored user with nothing applied, as a first-seen user would be, not as an error."""
    busy = FeatureState("v1")
    busy.add(Event.model_validate(_event(1, "u2")))
    monkeypatch.setattr(store, "batch_get_raw", lambda *a, **k: [[]])   # the cold read: no cold item is named
    states = stream.load_users(_settings(), {"u1", "u2", "u3"}, "v1", hot_items=[
        {"user_id": {"S": "u1"}}, {"user_id": {"S": "u2"}, "hot": {"B": busy.to_bytes()}}])
    fresh = UserState(FeatureState("v1"))
    for user in ("u1", "u2"):
        loaded = states[user]
        assert (loaded.shard, loaded.applied_seq, loaded.ring, loaded.new) == (fresh.shard, fresh.applied_seq,
                                                                               fresh.ring, False)
        assert not loaded.applied(_record(1, 0)) and not loaded.applied(_record(1, 1, shard=""))
    assert states["u1"].features.total_events == 0 and states["u2"].features.total_events == 1
    assert states["u3"].new and states["u3"].features.total_events == 0


def test_journal_keys_follow_the_utc_hour():
    assert stream.journal_hour_prefix(0) == "journal/1970-01-01T00/"
    assert stream.journal_hour_prefix(86400 + 3 * 3600 + 3599.9) == "journal/1970-01-02T03/"
    assert stream.journal_key(SHARD, "b-1", 3600) == f"journal/1970-01-01T01/{SHARD}/b-1.json"
    assert stream.journal_hour_prefixes(2, 5 * 3600 + 10) == [f"journal/1970-01-01T0{h}/" for h in (3, 4, 5)]
    assert stream.journal_hour_prefixes(1, 5 * 3600) == ["journal/1970-01-01T04/", "journal/1970-01-01T05/"]
    assert stream.journal_hour_prefixes(0.5, 5 * 3600 + 1799) == ["journal/1970-01-01T04/",
                                                                  "journal/1970-01-01T05/"]
    assert stream.journal_hour_prefixes(0.5, 5 * 3600 + 1800) == ["journal/1970-01-01T05/"]
    assert stream.journal_hour_prefixes(0, 5 * 3600) == ["journal/1970-01-01T05/"]
    now = 1_795_305_600.0 + 1800  # 2026-11-22T00:30:00Z
    assert stream.journal_hour_prefixes(3, now) == [
        "journal/2026-11-21T21/", "journal/2026-11-21T22/", "journal/2026-11-21T23/", "journal/2026-11-22T00/"]


def test_journal_keys_take_the_utc_hour_whatever_the_local_zone():
    """The hour of a journal's key is UTC's (what drift and reconcile list by), not the machine's local hour."""
    with local_time_zone("Etc/GMT+12"):   # UTC-12: 2026-11-22T00:30Z is 2026-11-21T12:30 there
        now = 1_795_305_600.0 + 1800
        assert stream.journal_hour_prefix(now) == "journal/2026-11-22T00/"
        assert stream.journal_key(SHARD, "b-1", now) == f"journal/2026-11-22T00/{SHARD}/b-1.json"


def test_warm_mark():
    from decimal import Decimal

    assert stream.warm_mark({}) == (None, 0)
    assert stream.warm_mark({"counted_seq": "5", "state_gen": Decimal(2)}) == ("5", 2)


def test_user_items_write_the_hot_item_and_the_cold_one_only_when_it_changed():
    user = UserState(FeatureState("v1"), shard=SHARD, applied_seq=12, ring=[b"12345678"])
    user.features.add(Event.model_validate(_event(1)))
    [hot] = stream.user_items("u1", user, "v1", 1000.9)
    assert hot == {"user_id": {"S": "u1"}, "feature_set": {"S": "v1"}, "hot": {"B": user.features.to_bytes()},
                   "pos": {"B": f"{SHARD}/12\n".encode() + b"12345678"}, "at": {"N": "1000"}}
    for hours in range(1, 4):  # tiles roll up into hourly ones
        user.features.add(Event.model_validate(_event(1000 + hours, timestamp=T0 + hours * 3600 + 7200)))
    hot, cold = stream.user_items("u1", user, "v1", 2000)
    assert user.features.cold_version == 1
    assert cold == {"user_id": {"S": "u1"}, "feature_set": {"S": "v1#cold"}, "cold": {"B": user.features.cold_bytes()}}
    assert len(stream.user_items("u1", user, "v1", 2000)) == 1  # stored: unchanged since


# -- the journal lookup -------------------------------------------------------------------------------------------
def test_journals_find_a_records_outcome_in_the_newest_batch_that_holds_it(monkeypatch):
    documents = {
        "old": {"records": {"100": {"row": 0, "late": False}, "101": {"row": 1, "late": True}},
                "rows": [{"event_id": "e-old0"}, {"event_id": "e-old1"}]},
        "new": {"records": {"101": {"row": 0, "late": False}, "102": {"duplicate": True}},
                "rows": [{"event_id": "e-new"}]},
    }
    reads = []
    monkeypatch.setattr(stream, "read_journal", lambda settings, key: reads.append(key) or documents.get(key))
    journals = stream.Journals(_settings(), [{"key": "old", "first": "100", "last": "101"},
                                             {"key": "new", "first": "101", "last": "103"},
                                             {"key": "gone", "first": "104", "last": "105"}])
    assert journals.outcome("101") == {"row": {"event_id": "e-new"}, "late": False}
    assert journals.outcome("100") == {"row": {"event_id": "e-old0"}, "late": False}
    assert journals.outcome("102") == {"duplicate": True}
    assert journals.outcome("103") is None     # in the batch's range, not in its records (rejected)
    assert journals.outcome("104") is None     # the journal expired
    assert journals.outcome("105") is None
    assert journals.outcome("99") is None and journals.outcome("106") is None
    assert reads == ["new", "old", "gone"]     # each journal read once


def test_read_journal_reads_the_artifacts_bucket(monkeypatch):
    calls = []
    monkeypatch.setattr(aws, "get_json", lambda *a, **k: calls.append((a, k)) or {"records": {}})
    assert stream.read_journal(_settings(), "journal/x.json") == {"records": {}}
    assert calls == [(("bucket", "journal/x.json"), {"missing_ok": True})]


# -- applying a batch ---------------------------------------------------------------------------------------------
class _NoJournals:
    def __init__(self, found=None):
        self.found, self.asked = found or {}, []

    def outcome(self, sequence):
        self.asked.append(sequence)
        return self.found.get(sequence)


def _users(*names, stored=()):
    return {u: UserState(FeatureState("v1"), new=u not in stored) for u in names}


def test_apply_scores_new_events_skips_duplicates_and_counts_past_the_mark():
    records = [_record(1, 100, arrival=T0 + 1), _bad(101), _record(2, 102, ingest_ts=T0 + 25),
               _record(1, 103), _record(3, 104, user="u2"), _record(4, 105, user="u3")]
    users = _users("u1", "u2", "u3", stored=("u3",))
    users["u3"].ring.append(stream.id_hash("e4"))  # e4 is one of u3's last events: a client retry
    done = stream._apply(records, users, _NoJournals(), counted=100, now=T0 + 99)
    expected = {}
    for r in (records[0], records[2], records[4]):
        state = expected.setdefault(r.event.user_id, FeatureState("v1"))
        expected[r.event.event_id] = [round(f, 6) for f in state.add(r.event)]
    assert done.rows == [
        {"event_id": "e1", "user_id": "u1", "ts": T0 + 10, "ingest_ts": T0 + 1, "features": expected["e1"]},
        {"event_id": "e2", "user_id": "u1", "ts": T0 + 20, "ingest_ts": T0 + 25, "features": expected["e2"]},
        {"event_id": "e3", "user_id": "u2", "ts": T0 + 30, "ingest_ts": T0 + 99, "features": expected["e3"]}]
    assert done.outcomes == {"100": {"row": 0, "late": False}, "102": {"row": 1, "late": False},
                             "103": {"duplicate": True}, "104": {"row": 2, "late": False},
                             "105": {"duplicate": True}}
    # record 100 is at the counted mark: its outcome is kept, its counts were added before
    assert done.tally == {"events_processed_by_stream": 2, "events_rejected": 1, "events_duplicate": 2,
                          "events_late": 0, "users_tracked": 1}
    assert (done.duplicates, done.late, done.touched) == (2, 0, {"u1", "u2", "u3"})
    assert (users["u1"].applied_seq, users["u3"].applied_seq) == (103, 105)
    assert users["u1"].ring == [stream.id_hash("e1"), stream.id_hash("e2")]
    assert users["u1"].features.total_events == 2


def test_apply_counts_everything_past_the_mark_and_each_new_user_once():
    records = [_bad(100), _record(1, 101), _record(2, 102), _record(3, 103, user="u2"),
               _record(9, 104, timestamp=T0 - 7200)]  # more than an hour behind u1's newest: late
    done = stream._apply(records, _users("u1", "u2"), _NoJournals(), counted=-1, now=T0)
    assert done.tally == {"events_processed_by_stream": 4, "events_rejected": 1, "events_duplicate": 0,
                          "events_late": 1, "users_tracked": 2}
    assert done.late == 1 and done.outcomes["104"] == {"row": 3, "late": True}
    assert done.rows[0]["ingest_ts"] == T0    # no ingest_ts, no arrival time: now
    again = stream._apply(records, _users("u1", "u2"), _NoJournals(), counted=104, now=T0)
    assert set(again.tally.values()) == {0} and len(again.rows) == 4 and again.late == 1


def test_an_event_id_twice_in_one_batch_is_a_duplicate_even_past_the_dedupe_ring():
    """Within a batch every event id is remembered, not only the user's last DEDUPE_RING: e0, then more events of
    the user than the ring holds, then e0 again, is a client duplicate."""
    records = [_record(n, 100 + n) for n in range(stream.DEDUPE_RING + 1)] + [_record(0, 200)]
    done = stream._apply(records, _users("u1"), _NoJournals(), counted=-1, now=T0)
    assert len(done.rows) == stream.DEDUPE_RING + 1
    assert done.outcomes["200"] == {"duplicate": True} and done.duplicates == 1
    assert done.tally["events_duplicate"] == 1


def test_apply_reuses_a_redelivered_records_outcome():
    user = UserState(FeatureState("v1"), shard=SHARD, applied_seq=101, new=False)
    first_row = {"event_id": "e1", "user_id": "u1", "ts": 1, "ingest_ts": 2, "features": [0.5]}
    journals = _NoJournals({"100": {"row": first_row, "late": True}, "101": {"duplicate": True}})
    records = [_record(1, 100), _record(1, 101), _record(2, 102)]
    done = stream._apply(records, {"u1": user}, journals, counted=101, now=T0)
    assert journals.asked == ["100", "101"]
    assert done.rows[0] == first_row and done.outcomes["100"] == {"row": 0, "late": True}
    assert done.outcomes["101"] == {"duplicate": True} and done.duplicates == 1 and done.late == 1
    assert done.tally == {"events_processed_by_stream": 1, "events_rejected": 0, "events_duplicate": 0,
                          "events_late": 0, "users_tracked": 0}
    assert user.features.total_events == 1 and done.touched == {"u1"}


def test_apply_rescores_a_redelivered_record_whose_journal_is_gone():
    user = UserState(FeatureState("v1"), shard=SHARD, applied_seq=100, new=False)
    user.features.add(Event.model_validate(_event(0)))
    stored = user.features.to_bytes()
    done = stream._apply([_record(1, 100, arrival=T0 + 3)], {"u1": user}, _NoJournals(), counted=100, now=T0)
    copy = FeatureState("v1")
    copy.add(Event.model_validate(_event(0)))
    assert done.rows == [{"event_id": "e1", "user_id": "u1", "ts": T0 + 10, "ingest_ts": T0 + 3,
                          "features": [round(f, 6) for f in copy.add(Event.model_validate(_event(1)))]}]
    assert done.outcomes == {"100": {"row": 0, "late": False}} and done.touched == set()
    assert user.features.to_bytes() == stored   # the state already holds the record: unchanged


def test_rescore_uses_a_copy_with_the_cold_tiles(monkeypatch):
    """A v2 state (not the default set) with hourly tiles stored apart (cold version 1); amounts that give
    features with more than 6 decimals, so the rounding shows. The warning names the record."""
    from pipeline import observability

    warnings = []
    monkeypatch.setattr(observability.logger, "warning", lambda message, **kw: warnings.append((message, kw)))
    user = UserState(FeatureState("v2"), new=False)
    for hours in range(4):
        user.features.add(Event.model_validate(_event(hours, timestamp=T0 + hours * 3600, event_type="purchase",
                                                      amount=10 / 3 + hours)))
    assert user.features.mark_stored() and user.features.cold_version == 1
    reference = FeatureState.from_bytes(user.features.to_bytes(), user.features.cold_bytes(), "v2")
    before = (user.features.to_bytes(), user.features.cold_bytes())
    record = _record(9, 100, timestamp=T0 + 4 * 3600, ingest_ts=T0 + 4 * 3600 + 1, arrival=5.0,
                     event_type="purchase", amount=1 / 7)
    raw = reference.add(record.event)
    assert any(round(f, 6) != round(f, 7) for f in raw)
    row = stream._rescore(record.event, user, record)
    assert row == {"late": False, "row": {"event_id": "e9", "user_id": "u1", "ts": T0 + 4 * 3600,
                                          "ingest_ts": T0 + 4 * 3600 + 1,
                                          "features": [round(f, 6) for f in raw]}}
    assert (user.features.to_bytes(), user.features.cold_bytes()) == before
    assert warnings == [("redelivered record without a journal entry: rescored on the current state",
                         {"extra": {"shard": SHARD, "sequence": "100", "event_id": "e9"}})]


# -- counting -----------------------------------------------------------------------------------------------------
def test_count_adds_the_batch_moves_the_mark_and_remembers_the_journal(monkeypatch):
    calls = []
    monkeypatch.setattr(store, "add_counters", lambda *a, **k: calls.append((a, k)))
    applied = stream.Applied()
    applied.tally |= {"events_processed_by_stream": 3, "events_rejected": 1}
    old = [{"key": f"k{n}", "first": str(n), "last": str(n)} for n in range(stream.JOURNAL_KEEP)]
    counters = {"pk": f"stream#{SHARD}", "counted_seq": "99", "journal": old, "events_processed_by_stream": 5}
    records = [_record(1, 100), _bad(101), _record(2, 102)]
    after = stream._count(records, _settings(), counters, 99, applied, "journal/key")
    entry = {"key": "journal/key", "first": "100", "last": "102"}
    assert after == {"pk": f"stream#{SHARD}", "counted_seq": "102", "journal": old[1:] + [entry],
                     "events_processed_by_stream": 8, "events_rejected": 1}
    assert calls == [(("state", f"stream#{SHARD}", applied.tally),
                      {"mark": ("counted_seq", "99", "102"), "set_values": {"journal": old[1:] + [entry]},
                       "size_after": store.item_size(after)})]
    assert counters["counted_seq"] == "99" and len(counters["journal"]) == stream.JOURNAL_KEEP  # not changed

    calls.clear()
    first = stream._count(records[:1], _settings(), {"pk": "p"}, -1, stream.Applied(), "k")
    assert first == {"pk": "p", "counted_seq": "100", "journal": [{"key": "k", "first": "100", "last": "100"}]}
    assert calls[0][1]["mark"] == ("counted_seq", None, "100")


def test_count_of_a_redelivered_batch_bumps_the_state_generation_only_when_it_writes_states(monkeypatch):
    calls = []
    monkeypatch.setattr(store, "add_counters", lambda *a, **k: calls.append((a, k)))
    counters = {"pk": "p", "counted_seq": "102", "state_gen": 2}
    records = [_record(1, 101), _record(2, 102)]
    assert stream._count(records, _settings(), counters, 102, stream.Applied(), "k") is counters
    assert calls == []
    applied = stream.Applied(touched={"u1"})
    assert stream._count(records, _settings(), counters, 102, applied, "k") == counters | {"state_gen": 3}
    assert calls == [(("state", f"stream#{SHARD}", {"state_gen": 1}), {})]
    assert stream._count(records, _settings(), {"pk": "p"}, 102, applied, "k") == {"pk": "p", "state_gen": 1}


# -- rejections and the execution input ---------------------------------------------------------------------------
def test_a_rejection_keeps_the_record_its_reasons_and_the_claimed_id():
    r = StreamRecord(sequence="105", shard_id=SHARD, arrival=0.0, size=5, errors=["a", "b"],
                     raw=json.dumps({"event_id": "x\ud800y"}))
    assert stream._rejection(r, 1000.5) == {
        "event_id": f"rejected#{SHARD}#105", "seq": "105", "status": "rejected", "claimed_event_id": "x?y",
        "errors": ["a", "b"], "raw": r.raw, "rejected_at": 1000.5, "expires_at": 1000 + 7 * 24 * 3600}
    for raw in ("{not json", "[1]", '{"event_id": 5}', "[" * 100_000, ""):
        r.raw = raw
        assert stream._rejection(r, 0)["claimed_event_id"] is None


def test_with_rows_adds_the_rows_as_given():
    assert stream.with_rows({}, "[1]") == '{"rows":[1]}'
    assert stream.with_rows({"a": 1, "b": [2]}, "[]") == '{"a":1,"b":[2],"rows":[]}'


def _input(body: str) -> dict:
    return json.loads(body)


def test_inference_input_inline_and_by_reference(monkeypatch):
    puts = []
    monkeypatch.setattr(aws, "put_json_text", lambda *a: puts.append(a))
    monkeypatch.setattr(stream.time, "time", lambda: 1234.5)
    rows = [{"event_id": "e1", "features": [1.0]}]
    stats = {"events": 1}
    body = _input(stream.inference_input(rows, "b-1", _settings(), "v2", stats))
    assert body == {"batch_id": "b-1", "created_at": 1234.5, "feature_set": "v2", "model_version": "m-1",
                    "stages": [{"events": 1, "stage": "process_stream"}], "rows_s3_uri": None, "rows": rows}
    assert stats == {"events": 1}
    given = _input(stream.inference_input(rows, "b-1", _settings(), "v1", stats, rows_json="[7]"))
    assert given["rows"] == [7]
    by_reference = _input(stream.inference_input(rows, "b-1", _settings(), "v1", stats, journal="journal/j.json",
                                                 by_reference=True))
    assert by_reference["rows_s3_uri"] == "s3://bucket/journal/j.json" and by_reference["rows"] == []
    # a journal to point at, but not asked for and within the limit (a batch's own input): inline
    journal_only = _input(stream.inference_input(rows, "b-1", _settings(), "v1", stats, journal="journal/j.json"))
    assert journal_only["rows_s3_uri"] is None and journal_only["rows"] == rows
    # by reference asked for, but no journal to point at: inline
    assert _input(stream.inference_input(rows, "b-1", _settings(), "v1", stats, by_reference=True))["rows"] == rows
    assert puts == []


def test_inference_input_goes_by_reference_past_the_inline_limit(monkeypatch):
    puts = []
    monkeypatch.setattr(aws, "put_json_text", lambda *a: puts.append(a))
    monkeypatch.setattr(stream.time, "time", lambda: 1234.5)

    def rows(pad: int) -> list[dict]:
        return [{"event_id": "x" * pad}]

    size = len(stream.inference_input(rows(0), "b-1", _settings(), "v1", {}))
    at_limit = rows(stream.MAX_INLINE_INPUT_BYTES - size)
    body = stream.inference_input(at_limit, "b-1", _settings(), "v1", {})
    assert len(body) == stream.MAX_INLINE_INPUT_BYTES and _input(body)["rows"] == at_limit
    over = rows(stream.MAX_INLINE_INPUT_BYTES - size + 1)
    journaled = _input(stream.inference_input(over, "b-1", _settings(), "v1", {}, journal="journal/j.json"))
    assert journaled["rows_s3_uri"] == "s3://bucket/journal/j.json" and journaled["rows"] == [] and puts == []
    alone = _input(stream.inference_input(over, "b-1", _settings(), "v1", {}))
    assert alone["rows_s3_uri"] == "s3://bucket/batches/b-1.json" and alone["rows"] == []
    assert puts == [("bucket", "batches/b-1.json", json.dumps({"rows": over}, separators=(",", ":")))]


class _AlreadyExists(Exception):
    pass


class _StepFunctions:
    class exceptions:
        ExecutionAlreadyExists = _AlreadyExists

    def __init__(self, exists=False):
        self.exists, self.calls = exists, []

    def start_execution(self, **kwargs):
        self.calls.append(kwargs)
        if self.exists:
            raise _AlreadyExists()
        return {"executionArn": f"arn:new:{kwargs['name']}"}


def test_start_inference_names_the_execution_after_the_batch(monkeypatch):
    sfn = _StepFunctions()
    monkeypatch.setattr(aws, "client", lambda name: sfn if name == "stepfunctions" else None)
    monkeypatch.setattr(stream.time, "time", lambda: 1.0)
    rows = [{"event_id": "e1"}]
    assert stream.start_inference(rows, "b-1", _settings(), "v1", {"events": 1}) == "arn:new:b-1"
    assert stream.start_inference(rows, "b-1", _settings(), "v1", {}, name="redrive-1") == "arn:new:redrive-1"
    assert sfn.calls[0] == {"stateMachineArn": _settings().state_machine_arn, "name": "b-1",
                            "input": stream.inference_input(rows, "b-1", _settings(), "v1", {"events": 1})}
    stream.start_inference(rows, "b-1", _settings(), "v1", {}, rows_json="[7]")   # the rows' JSON as given
    assert json.loads(sfn.calls[-1]["input"])["rows"] == [7]
    by_reference = json.loads(stream.start_inference(rows, "b-1", _settings(), "v1", {}, journal="j.json",
                                                     by_reference=True, rows_json="[]") and sfn.calls[-1]["input"])
    assert by_reference["rows_s3_uri"] == "s3://bucket/j.json"


def test_start_inference_of_a_batch_already_started_returns_its_execution(monkeypatch):
    monkeypatch.setattr(aws, "client", lambda name: _StepFunctions(exists=True))
    assert stream.start_inference([{}], "b-1", _settings(), "v1", {}) == (
        "arn:aws:states:us-east-1:1:execution:inference:b-1")
    assert stream.start_inference([{}], "b-1", _settings(), "v1", {}, name="n") == (
        "arn:aws:states:us-east-1:1:execution:inference:n")


def test_process_of_no_records_does_nothing():
    assert stream.process([], _settings()) == stream.BatchOutcome(None, 0, 0, 0, None, 0)


@pytest.mark.parametrize("seconds", [time.time()], ids=["now"])  # a fixed id: xdist workers collect alike
def test_stream_record_defaults(seconds):
    r = StreamRecord(sequence="1", shard_id=SHARD, arrival=seconds, size=0)
    assert (r.event, r.errors, r.raw) == (None, [], "")
