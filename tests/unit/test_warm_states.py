"""States kept warm between a shard's batches (pipeline/warm.py): reused only while the shard's counters show the
mark the environment left, dropped when a batch fails, and never a reason for a vector or a stored state to differ
from what a fresh read gives. Each ``WarmStates`` stands for one execution environment."""
import json

import pytest
from lambdakit import T0, kinesis_event

from pipeline import aws as aws_helpers, inference, queries, store, stream
from pipeline.events import Event
from pipeline.features import FeatureState
from pipeline.settings import settings
from pipeline.warm import WarmStates

COUNTERS = {"pk": "stream#shardId-000000000000"}


def _event(n: int, user: str) -> dict:
    return {"event_id": f"e{n}", "user_id": user, "event_type": "purchase" if n % 3 == 0 else "view",
            "timestamp": T0 + n * 97, "amount": float(n) if n % 3 == 0 else None}


def _run(lambda_context, monkeypatch, environment: WarmStates, events: list[dict], first_seq: int) -> dict:
    from process_stream import handler

    monkeypatch.setattr(stream, "WARM", environment)
    return handler.handler(kinesis_event([{k: v for k, v in e.items() if v is not None} for e in events],
                                         first_seq=first_seq), lambda_context)


def _scored(aws) -> dict[str, list[float]]:
    sfn = aws["sfn"]
    executions = sfn.list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    return {r["event_id"]: r["features"] for e in executions
            for r in inference.load_rows(json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]))}


def _expected(events: list[dict]) -> dict[str, list[float]]:
    """Every event's vector from one fresh state per user, in order: what a single reader would compute."""
    states: dict[str, FeatureState] = {}
    return {e["event_id"]: [round(f, 6) for f in states.setdefault(e["user_id"], FeatureState("v1")).add(
        Event.model_validate({k: v for k, v in e.items() if v is not None}))] for e in events}


def test_environments_taking_turns_read_what_the_other_wrote(aws, lambda_context, monkeypatch):
    """A and B process the shard's batches in turns (Lambda may run a shard's next batch in any environment): A's
    kept states are stale after B's batch, so A reads the users again; every vector and count as one reader's."""
    a, b = WarmStates(), WarmStates()
    events = [_event(n, f"u{n % 3}") for n in range(24)]
    for number, turn in enumerate((a, a, b, a, b, b)):
        assert _run(lambda_context, monkeypatch, turn, events[4 * number:4 * number + 4], 100 + 4 * number) == {
            "batchItemFailures": []}
    assert _scored(aws) == _expected(events)
    assert [queries.user_features(settings(), f"u{u}")["total_events"] for u in range(3)] == [8, 8, 8]


@pytest.mark.parametrize("failing", [(aws_helpers, "put_json_text"), (store, "batch_put_raw")],
                         ids=["journal, before the counters", "states, after the counters"])
def test_a_failed_batch_leaves_nothing_kept(aws, lambda_context, monkeypatch, failing):
    """A batch failing before its states are written holds events in memory that are not stored; its retry (same
    environment) must read the stored states, not reuse the ones it changed, whether the counters moved or not."""
    env = WarmStates()
    events = [_event(n, "u1") for n in range(6)]
    _run(lambda_context, monkeypatch, env, events[:3], 100)
    module, name = failing
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: (_ for _ in ()).throw(OSError("connection reset")))
    with pytest.raises(OSError):
        _run(lambda_context, monkeypatch, env, events[3:], 103)
    monkeypatch.setattr(module, name, real)
    _run(lambda_context, monkeypatch, env, events[3:], 103)  # the retry
    assert queries.user_features(settings(), "u1")["total_events"] == 6
    assert _scored(aws) == _expected(events)


def test_a_batch_writing_states_under_an_unmoved_mark_tells_the_kept_ones(aws, lambda_context, monkeypatch):
    """Every state write follows a change of the shard's counters item: a retried batch whose records were counted
    already (the counted mark stays) but not applied bumps ``state_gen``, so an environment that kept states at that
    mark reads them again."""
    a = WarmStates()
    events = [_event(n, "u1") for n in range(6)]
    _run(lambda_context, monkeypatch, a, events[:3], 100)
    kept_before = a.take(("features", "v1", "shardId-000000000000"))  # A's states after the first batch
    real = store.batch_put_raw
    monkeypatch.setattr(store, "batch_put_raw", lambda *a, **k: (_ for _ in ()).throw(OSError("connection reset")))
    with pytest.raises(OSError):  # B counts the second batch, then fails before writing the states
        _run(lambda_context, monkeypatch, WarmStates(), events[3:], 103)
    monkeypatch.setattr(store, "batch_put_raw", real)
    counted = store.get_item("state", COUNTERS)
    assert counted["counted_seq"] == "105" and "state_gen" not in counted
    # A as if it had kept its states at this mark: the retry below writes u1 without moving the mark
    a.keep(("features", "v1", "shardId-000000000000"), ("105", 0), dict(kept_before.users))
    _run(lambda_context, monkeypatch, WarmStates(), events[3:], 103)  # the retry, in a third environment
    assert store.get_item("state", COUNTERS)["state_gen"] == 1
    more = [_event(n, "u1") for n in range(6, 8)]
    _run(lambda_context, monkeypatch, a, more, 106)  # A must not reuse u1 as it kept it (3 events)
    assert queries.user_features(settings(), "u1")["total_events"] == 8
    assert _scored(aws) == _expected(events + more)


def test_the_kept_users_are_bounded_least_recently_used_first():
    env = WarmStates(max_users=3)
    env.keep("shard", ("1", 0), {"u1": 1, "u2": 2, "u3": 3})
    env.keep("shard", ("2", 0), {"u1": 10, "u4": 4}, before=env.take("shard"))
    kept = env.take("shard")
    assert kept is not None and kept.mark == ("2", 0) and dict(kept.users) == {"u3": 3, "u1": 10, "u4": 4}
    assert env.take("shard") is None  # taken: a failing batch leaves nothing behind
    env.keep("a", ("1", 0), {"u1": 1, "u2": 2})
    env.keep("b", ("1", 0), {"u3": 3, "u4": 4})  # the bound is over all shards: the other one goes first
    assert env.take("a") is None and env.take("b") is not None


def test_other_shards_go_only_as_far_as_the_bound_needs():
    env = WarmStates(max_users=4)
    env.keep("a", ("1", 0), {"u1": 1, "u2": 2})
    env.keep("c", ("1", 0), {"u3": 3})
    env.keep("d", ("1", 0), {"u4": 4})                      # exactly at the bound: nothing goes
    assert sorted(env._shards) == ["a", "c", "d"]
    env.keep("b", ("1", 0), {"u5": 5, "u6": 6})             # 6 > 4: "a" (2 users) goes, then it fits
    assert sorted(env._shards) == ["b", "c", "d"]
    assert list(env.take("b").users) == ["u5", "u6"]


def test_the_bound_follows_the_function_memory(monkeypatch):
    """A quarter of the function's memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE, set by the Lambda runtime: "Defined
    runtime environment variables", https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html) at 16 KB
    per kept user."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    assert WarmStates().max_users == 16_384
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    assert WarmStates().max_users == 2_048
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # outside Lambda: sized as a 1,024 MB function
    assert WarmStates().max_users == 16_384
