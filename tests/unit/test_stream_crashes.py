"""process_stream crashing between its writes (journal -> counters -> feature states -> StartExecution), and the
retry Lambda makes with the same records: every event is applied, counted and scored once, a late event is still
reported late and counted once, a rejection is kept once. Times are recent and grid-aligned (5-minute edges)."""
import json
import time

import boto3
import pytest
from lambdakit import kinesis_event

from pipeline import aws as pipeline_aws, inference, queries, store, stream
from pipeline.events import Event
from pipeline.features import FeatureState
from pipeline.settings import settings

T = (int(time.time()) - 3 * 3600) // 300 * 300


def _event(event_id, user, ts, **fields):
    return {"event_id": event_id, "user_id": user, "event_type": "view", "timestamp": ts} | fields


# u1: e3 arrives more than the lateness (1 h) behind e2: late; e1 again: a client duplicate; one bad record
BATCH = [_event("e1", "u1", T), _event("e2", "u1", T + 4000), _event("e4", "u2", T + 300, event_type="purchase",
                                                                            amount=3.0),
         _event("e3", "u1", T + 399.999), _event("e1", "u1", T), b"{not json", _event("e5", "u2", T + 600)]


def _expected_rows() -> dict[str, list[float]]:
    """Each unique event's features from a fresh state per user, in arrival order."""
    states, rows = {}, {}
    for raw in BATCH:
        if isinstance(raw, bytes) or raw["event_id"] in rows:
            continue
        state = states.setdefault(raw["user_id"], FeatureState("v1"))
        rows[raw["event_id"]] = [round(f, 6) for f in state.add(Event.model_validate(raw))]
    return rows


def _scored(aws) -> list[dict]:
    sfn = aws["sfn"]
    executions = sfn.list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    return [r for e in executions
            for r in inference.load_rows(json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]))]


def _handle(lambda_context):
    from process_stream import handler
    return handler.handler(kinesis_event(BATCH, first_seq=100), lambda_context)


def _crash_once(monkeypatch, module, name, after_calls=0, partial=None):
    """``module.name`` raises on its first call (after ``partial`` ran on the call's arguments), then works."""
    real = getattr(module, name)
    calls = []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1 + after_calls:
            if partial:
                partial(real, *args, **kwargs)
            raise TimeoutError(f"crash in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, crashing)


CRASHES = {
    "journal": lambda mp: _crash_once(mp, pipeline_aws, "put_json_text"),
    "counters": lambda mp: _crash_once(mp, store, "add_counters"),
    "first_state_written": lambda mp: _crash_once(mp, store, "batch_put_raw",
                                                  partial=lambda real, table, items: real(table, items[:1])),
    "states": lambda mp: _crash_once(mp, store, "batch_put_raw"),
    "rejections": lambda mp: _crash_once(mp, store, "batch_put"),
    "inference": lambda mp: _crash_once(mp, stream, "start_inference"),
}


@pytest.mark.parametrize("crash", list(CRASHES))
def test_a_crash_between_writes_is_repaired_by_the_retry(aws, lambda_context, monkeypatch, crash):
    CRASHES[crash](monkeypatch)
    with pytest.raises(TimeoutError):
        _handle(lambda_context)
    assert _handle(lambda_context) == {"batchItemFailures": []}
    assert _handle(lambda_context) == {"batchItemFailures": []}     # and a second redelivery changes nothing

    stats = queries.stats(settings())
    assert {k: stats[k] for k in ("events_processed", "events_late", "events_duplicate", "events_rejected",
                                  "users_tracked")} == {"events_processed": 5, "events_late": 1,
                                                        "events_duplicate": 1, "events_rejected": 1,
                                                        "users_tracked": 2}
    u1, u2 = queries.user_features(settings(), "u1"), queries.user_features(settings(), "u2")
    assert (u1["total_events"], u1["late_events"], u2["total_events"]) == (2, 1, 2)
    scored = _scored(aws)
    assert sorted(r["event_id"] for r in scored) == ["e1", "e2", "e3", "e4", "e5"]
    assert {r["event_id"]: r["features"] for r in scored} == _expected_rows()
    rejected = boto3.resource("dynamodb", region_name="us-east-1").Table("events").scan()["Items"]
    assert [r["event_id"] for r in rejected] == ["rejected#shardId-000000000000#105"]


def test_the_journal_records_each_outcome(aws, lambda_context):
    _handle(lambda_context)
    counters = store.get_item("state", {"pk": "stream#shardId-000000000000"})
    assert counters["counted_seq"] == "106" and len(counters["journal"]) == 1
    entry = counters["journal"][0]
    assert (entry["first"], entry["last"]) == ("100", "106")
    journal = stream.read_journal(settings(), entry["key"])
    assert journal["records"] == {"100": {"row": 0, "late": False}, "101": {"row": 1, "late": False},
                                  "102": {"row": 2, "late": False}, "103": {"row": 3, "late": True},
                                  "104": {"duplicate": True}, "106": {"row": 4, "late": False}}
    assert [r["event_id"] for r in journal["rows"]] == ["e1", "e2", "e4", "e3", "e5"]
    assert entry["key"].startswith("journal/") and entry["key"].endswith(f"/shardId-000000000000/{journal['batch_id']}.json")
