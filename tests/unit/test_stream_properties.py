"""Property: for any record on the stream (written by the API or straight to Kinesis), process_stream scores it,
drops it as a duplicate, or rejects it with reasons kept in EVENTS_TABLE; it never raises and never fails the batch.
What passes validation can be stored: the feature state takes it, and every number of its row is one DynamoDB
accepts (boto3's serializer applies DynamoDB's number rules: 38 digits, magnitude 1E-130 to 9.99E+125,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html)."""
import itertools
import time

from boto3.dynamodb.types import TypeSerializer
from contract_strategies import events, payloads
from hypothesis import HealthCheck, given, settings, strategies as st
from lambdakit import kinesis_event

from pipeline import store
from pipeline.features import FeatureState

sequences = itertools.count(1_000_000, 1_000)  # every example after the last: never taken for a redelivery
# the batch property goes through moto (~300 ms a batch on this machine): fewer, larger examples
FEW = settings(settings.default, max_examples=max(8, settings.default.max_examples // 6),
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _storable(row: dict) -> None:
    TypeSerializer().serialize(store.to_item(row))  # raises on a number DynamoDB cannot store


@given(payload=payloads | events.map(lambda e: e | {"ingest_ts": time.time()}).map(
    lambda e: __import__("json").dumps(e).encode()), feature_set=st.sampled_from(["v1", "v2"]))
def test_a_record_is_an_event_that_can_be_stored_or_a_rejection_with_reasons(payload, feature_set):
    from pipeline import stream

    record = stream.decode(kinesis_event([payload])["Records"][0], now=time.time())
    assert (record.event is None) == bool(record.errors)
    if record.event is None:
        assert all(isinstance(e, str) and e for e in record.errors)
        _storable(stream._rejection(record, time.time()))
        return
    state = FeatureState(feature_set)
    features = state.observe(record.event).features
    FeatureState.from_bytes(state.to_bytes(), state.cold_bytes(), feature_set)  # the stored form reads back
    _storable({"event_id": record.event.event_id, "user_id": record.event.user_id, "ts": record.event.timestamp,
               "ingest_ts": record.event.ingest_ts or record.arrival, "features": [round(f, 6) for f in features]})


@FEW
@given(batch=st.lists(payloads, min_size=1, max_size=12))
def test_any_batch_is_scored_or_rejected_with_reasons_never_failed(aws, lambda_context, monkeypatch, batch):
    from pipeline import stream
    from process_stream import handler

    scored, outcomes = [], []
    monkeypatch.setattr(stream, "start_inference", lambda rows, *a, **k: scored.extend(rows))
    process = stream.process
    monkeypatch.setattr(stream, "process", lambda *a, **k: outcomes.append(process(*a, **k)) or outcomes[-1])
    first = next(sequences)
    assert handler.handler(kinesis_event(batch, first_seq=first), lambda_context) == {"batchItemFailures": []}

    [outcome] = outcomes
    assert outcome.events + outcome.duplicates + outcome.rejected == len(batch)
    assert len(scored) == outcome.events
    for row in scored:
        _storable(row)
    keys = [{"event_id": {"S": f"rejected#shardId-000000000000#{first + i}"}} for i in range(len(batch))]
    [rejected] = store.batch_get_raw(store.raw_read("events", keys, attributes=("event_id", "errors")))
    assert len(rejected) == outcome.rejected and all(r["errors"]["L"] for r in rejected)
