"""One very active user through the real handler (50,000 events): a scale test, kept apart from
test_process_stream.py so that the mutation run of pipeline/stream.py (scripts/mutate.py), which runs every test
that reaches a mutated function, does not pay its ~16 s per mutant."""
import boto3
from lambdakit import T0, event, kinesis_event

from pipeline import queries, store
from pipeline.settings import settings


def _handler():
    from process_stream import handler
    return handler.handler


def _features():
    return store.from_item(boto3.resource("dynamodb", region_name="us-east-1").Table("features").scan()["Items"])


def test_one_very_active_user_is_scored_in_full_with_bounded_state(aws, lambda_context, monkeypatch):
    """50,000 events of one user at 100,000 events/day (v2, 12 hours of event time) through the real handler in
    batches of 500: every event is scored, no batch fails, the stored state stays bounded (the previous layout
    kept every event of the week: this user's item would have passed DynamoDB's 400 KB item size limit at ~16,000
    events; DynamoDB Developer Guide, "Constraints in Amazon DynamoDB", Items: "The maximum item size in DynamoDB
    is 400 KB", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html)."""
    monkeypatch.setenv("FEATURE_SET", "v2")
    from pipeline import stream

    scored = []
    monkeypatch.setattr(stream, "start_inference", lambda rows, *a, **k: scored.extend(r["event_id"] for r in rows))
    kinds = ["view", "click", "add_to_cart", "purchase"]
    for start in range(0, 50_000, 500):
        batch = kinesis_event([event(n, event_type=kinds[n % 4], amount=1.0 if n % 4 == 3 else None,
                                     timestamp=T0 + n * 0.864) for n in range(start, start + 500)],
                              first_seq=1_000 + start)
        assert _handler()(batch, lambda_context) == {"batchItemFailures": []}
    assert len(scored) == len(set(scored)) == 50_000
    items = _features()
    hot = [i for i in items if i["feature_set"] == "v2"]
    assert len(items) == 2 and store.item_size(hot[0]) <= 1024          # hot + cold items, nothing per event
    assert sum(store.item_size(i) for i in items) <= 8 * 1024
    features = queries.user_features(settings(), "u1")
    assert features["total_events"] == 50_000
    assert features["features"]["events_24h"] == 50_000 and features["features"]["events_1h"] > 4_000
