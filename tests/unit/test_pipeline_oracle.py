"""The whole write path against the brute-force oracle: a seeded stream with client duplicates, ~5 % out-of-order
events and late ones goes through the process_stream handler in Kinesis batches (one batch delivered twice, one
crashing mid-batch); every stored feature vector, the late flags, the counters and the per-user rolling medians
must equal what the oracle recomputes from the full event log."""
import hashlib
import json
import random
import statistics

import boto3
import feature_oracle
import pytest
from lambdakit import (
    T0,  # recent: the input contract rejects events over 30 days old
    kinesis_event,
)

from pipeline import inference, queries
from pipeline.features import named
from pipeline.settings import settings


def _stream(seed=11, users=6, count=700):
    rng = random.Random(seed)
    clock = {f"u{i}": T0 + rng.uniform(0, 600) for i in range(users)}
    events = []
    for n in range(count):
        user = rng.choice(sorted(clock))
        clock[user] += rng.expovariate(1 / 400)
        kind = rng.choice(["view", "view", "click", "add_to_cart", "purchase"])
        events.append({"event_id": f"e{n}", "user_id": user, "event_type": kind, "timestamp": round(clock[user], 3),
                       "amount": round(rng.uniform(1, 80), 2) if kind == "purchase" else None,
                       "device_type": rng.choice(["mobile", "desktop", "tablet"])})
    arrivals = events[:]
    for i in range(len(arrivals) - 1):  # ~5 % out of order
        if rng.random() < 0.05:
            arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    for i in range(50, len(arrivals) - 200, 90):  # held back by more than the allowed lateness: late
        arrivals.insert(i + 150, arrivals.pop(i))
    for i in rng.sample(range(len(arrivals)), 25):  # client retries: the same event again, as a new record
        arrivals.insert(min(len(arrivals), i + rng.randint(1, 30)), dict(arrivals[i]))
    return arrivals


def _score(event_id: str) -> float:
    return int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


@pytest.mark.parametrize("feature_set", ["v1", "v2"])
def test_pipeline_state_equals_the_oracle(aws, lambda_context, monkeypatch, feature_set):
    monkeypatch.setenv("FEATURE_SET", feature_set)
    from pipeline import stream
    from process_stream import handler as process_stream

    arrivals = _stream()
    # One shard, batches of 50 records. Batch 3 is delivered twice. Batch 6 crashes after its writes, before its
    # inference starts; the retry is a larger batch (batches 6 and 7 together, as after a BatchSize change), so
    # the counters must skip exactly the records already counted.
    ranges = [(start, min(start + 50, len(arrivals))) for start in range(0, len(arrivals), 50)]
    deliveries = []
    for number, (start, end) in enumerate(ranges):
        if number == 7:
            continue
        deliveries.append((start, end, "crash" if number == 6 else None))
        if number == 3:
            deliveries.append((start, end, None))
        if number == 6:
            deliveries.append((start, ranges[7][1], None))
    real_start = stream.start_inference
    for start, end, fault in deliveries:
        batch = kinesis_event(arrivals[start:end], first_seq=1000 + start)
        if fault == "crash":
            monkeypatch.setattr(stream, "start_inference", lambda *a, **k: (_ for _ in ()).throw(TimeoutError()))
            with pytest.raises(TimeoutError):
                process_stream.handler(batch, lambda_context)
            monkeypatch.setattr(stream, "start_inference", real_start)
            continue
        assert process_stream.handler(batch, lambda_context) == {"batchItemFailures": []}

    expected = feature_oracle.replay(arrivals, feature_set)
    # what each event was scored with, and whether it was late: the batch journals (one S3 object per batch)
    s3 = boto3.client("s3", region_name="us-east-1")
    journaled: dict[str, dict] = {}
    for obj in s3.list_objects_v2(Bucket="artifacts", Prefix="journal/")["Contents"]:
        journal = json.loads(s3.get_object(Bucket="artifacts", Key=obj["Key"])["Body"].read())
        for outcome in journal["records"].values():
            if "row" in outcome:
                row = journal["rows"][outcome["row"]]
                journaled[row["event_id"]] = {"late": outcome["late"], "features": row["features"]}
    assert journaled.keys() == expected.keys()
    for event_id, truth in expected.items():
        assert journaled[event_id]["late"] == truth["late"], event_id
        if not truth["late"]:
            got = named(journaled[event_id]["features"], feature_set)
            for name, value in truth["features"].items():  # stored rounded to 6 decimals
                assert got[name] == pytest.approx(value, abs=1e-6), (event_id, name)
    counters = queries.stats(settings())
    unique = len(expected)
    assert counters["events_processed"] == unique
    assert counters["events_duplicate"] == len(arrivals) - unique
    assert counters["events_late"] == sum(t["late"] for t in expected.values()) > 0
    assert counters["users_tracked"] == len({e["user_id"] for e in arrivals})

    # Score every event (deterministic scores), store them as the state machine would, compare the medians.
    executions = aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    rows = [r for e in executions for r in inference.load_rows(json.loads(aws["sfn"].describe_execution(
        executionArn=e["executionArn"])["input"]))]
    assert sorted(r["event_id"] for r in rows) == sorted(expected)  # each event scored once
    for r in rows:  # with the features its first delivery computed
        assert r["features"] == journaled[r["event_id"]]["features"], r["event_id"]
    inference.store_predictions({"batch_id": "b", "created_at": T0, "model_version": "m", "stages": [],
                                 "predictions_s3_uri": None,
                                 "predictions": [{"event_id": r["event_id"], "user_id": r["user_id"], "ts": r["ts"],
                                                  "ingest_ts": r["ingest_ts"], "score": round(_score(r["event_id"]), 6),
                                                  "variant": "primary", "model_version": "m"} for r in rows]}, settings())
    by_user: dict[str, list] = {}
    for event in {e["event_id"]: e for e in arrivals}.values():
        by_user.setdefault(event["user_id"], []).append((event["timestamp"], round(_score(event["event_id"]), 6)))
    for window in (300, 3600):
        medians = []
        for user, scored in by_user.items():
            truth = feature_oracle.user_median(scored, window)
            medians.append(truth)
            assert queries.user_median(settings(), user, window)["median"] == pytest.approx(truth), (user, window)
    assert queries.stats(settings())["median_of_medians"] == pytest.approx(
        statistics.median(feature_oracle.user_median(s, 300) for s in by_user.values()))
