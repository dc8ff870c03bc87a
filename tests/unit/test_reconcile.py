"""Reconciliation (pipeline/reconcile.py, issue 11): journaled batches without predictions are found and re-driven."""
import base64
import json
import time

import pytest
from lambdakit import event, kinesis_event

from pipeline import inference, model_client, reconcile, store, stream
from pipeline.settings import settings

LATER = 3600  # reconcile "an hour later": every journal written by the test is past the grace period


def _handler():
    from process_stream import handler
    return handler.handler


@pytest.fixture
def model(monkeypatch):
    """The model answers 0.5 for every row (no endpoint in the unit tests)."""
    monkeypatch.setattr(model_client, "invoke", lambda endpoint, rows, chunk, target_variant=None: model_client.Scored(
        [0.5] * len(rows), ["primary"] * len(rows), 0.01, 1))


def _executions(aws) -> dict[str, dict]:
    """name -> input of every execution started."""
    sfn = aws["sfn"]
    return {e["name"]: json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
            for e in sfn.list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]}


def _run(execution_input: dict, only: set[str] | None = None) -> None:
    """What the state machine does: InvokeModel -> StorePredictions -> RecordCost (``only``: store just these
    events' predictions, as a StorePredictions cut short by the execution's timeout would)."""
    scored = inference.invoke_model(execution_input, settings())
    if only is not None:
        scored["predictions"] = [p for p in scored["predictions"] if p["event_id"] in only]
        store.batch_put(settings().predictions_table,
                        [p | {"batch_id": scored["batch_id"]} for p in scored["predictions"]], ("event_id",))
        return
    inference.record_cost(inference.store_predictions(scored, settings()), settings())


def _batch(lambda_context, events: list[dict], shard: str = "shardId-000000000000", first_seq: int = 100) -> str:
    """One batch through the process_stream handler; its batch id (= its execution's name)."""
    assert _handler()(kinesis_event(events, shard=shard, first_seq=first_seq), lambda_context) == {
        "batchItemFailures": []}
    records = kinesis_event(events, shard=shard, first_seq=first_seq)["Records"]
    return stream.batch_id_for([stream.decode(r) for r in records])


def test_a_batch_whose_predictions_exist_is_done(aws, lambda_context, model):
    batch_id = _batch(lambda_context, [event(1), event(2), event(3, user="u2")])
    _run(_executions(aws)[batch_id])
    report = reconcile.reconcile(now=time.time() + LATER)
    assert report.summary() | {"hours": 24} == {
        "hours": 24, "grace_seconds": reconcile.GRACE_SECONDS, "journals": 1, "young": 0, "done": 1,
        "unreadable": 0, "truncated": False, "missing_batches": 0, "missing_rows": 0, "redriven": 0}


def test_a_batch_whose_execution_timed_out_is_reported(aws, lambda_context, model):
    """Nothing stored (timed out in InvokeModel) or part of it (timed out inside StorePredictions): reported with
    the rows missing; a batch of client duplicates only (no rows, no execution) is done."""
    lost = _batch(lambda_context, [event(1), event(2), event(3, user="u2")], shard="shardId-000000000000")
    partial = _batch(lambda_context, [event(4), event(5), event(6, user="u2"), event(7, user="u3")],
                     shard="shardId-000000000001")
    stored = _batch(lambda_context, [event(8)], shard="shardId-000000000002")
    only_duplicates = _batch(lambda_context, [event(8)], shard="shardId-000000000002", first_seq=200)
    executions = _executions(aws)
    assert only_duplicates not in executions
    _run(executions[partial], only={"e4"})
    _run(executions[stored])

    report = reconcile.reconcile(now=time.time() + LATER)
    assert (report.listed, report.done, report.young) == (4, 2, 0)
    found = {b.batch_id: b for b in report.missing}
    assert set(found) == {lost, partial}
    assert (found[lost].rows, found[lost].missing) == (3, 3)
    assert (found[partial].rows, found[partial].missing) == (4, 3)
    assert found[lost].key.startswith("journal/") and found[lost].key.endswith(f"/shardId-000000000000/{lost}.json")
    assert abs(found[lost].created_at - time.time()) < 60
    assert report.summary()["missing_rows"] == 6 and not report.redriven
    assert len(_executions(aws)) == 3  # reporting starts nothing


def test_a_young_journal_is_skipped(aws, lambda_context):
    _batch(lambda_context, [event(1), event(2)])
    report = reconcile.reconcile()  # just written: its execution may still be running
    assert (report.listed, report.young, report.done, report.missing) == (1, 1, 0, [])
    report = reconcile.reconcile(now=time.time() + 5 * 60, grace_seconds=60)
    assert (report.young, len(report.missing)) == (0, 1)


def test_redrive_points_to_the_journal_and_the_batch_then_reconciles(aws, lambda_context, model):
    batch_id = _batch(lambda_context, [event(1), event(2), event(3, user="u2")])
    partial = _batch(lambda_context, [event(4), event(5)], shard="shardId-000000000001")
    _run(_executions(aws)[partial], only={"e4"})

    report = reconcile.reconcile(now=time.time() + LATER, redrive=True)
    assert {b.batch_id for b in report.redriven} == {batch_id, partial}
    by_name = _executions(aws)
    redriven = {name: value for name, value in by_name.items() if name not in (batch_id, partial)}
    assert len(redriven) == 2
    for name, execution_input in redriven.items():
        original = name.rsplit("-r", 1)[0]
        journal = next(b.key for b in report.missing if b.batch_id == original)
        assert name.rsplit("-r", 1)[1].isdigit()
        assert execution_input["batch_id"] == original and execution_input["rows"] == []
        assert execution_input["rows_s3_uri"] == f"s3://artifacts/{journal}"
        assert [r["event_id"] for r in inference.load_rows(execution_input)] == [
            r["event_id"] for r in by_name[original]["rows"]]  # the rows the first execution had
        assert execution_input["feature_set"] == "v1"
        assert execution_input["stages"] == [{"stage": "process_stream", "events": len(by_name[original]["rows"]),
                                              "bytes": 0, "seconds": 0.0, "memory_mb": 0, "s3_puts": 0,
                                              "redrive_of": journal}]  # a redrive, not a second stream batch
        _run(execution_input)

    report = reconcile.reconcile(now=time.time() + LATER)
    assert (report.done, report.missing) == (2, [])
    assert store.get_item("state", {"pk": "stats"})["events_predicted"] == 5  # each batch counted once


def test_the_listing_is_bounded_and_covers_the_window_by_hour(aws, lambda_context):
    for shard in range(3):
        _batch(lambda_context, [event(shard)], shard=f"shardId-00000000000{shard}")
    report = reconcile.reconcile(now=time.time() + LATER, max_journals=2)
    assert (report.listed, report.truncated, len(report.missing)) == (2, True, 2)
    hour = 1_800_000_000 // 3600 * 3600
    assert stream.journal_hour_prefixes(2, hour + 60) == [
        "journal/2027-01-15T06/", "journal/2027-01-15T07/", "journal/2027-01-15T08/"]
    # journals older than the window are not listed
    assert reconcile.reconcile(now=time.time() + 30 * 3600, hours=24).listed == 0


def test_the_command_reports_and_redrives(aws, lambda_context, monkeypatch, capsys):
    """scripts/reconcile.py --stack: the stack outputs name the bucket, table and state machine."""
    from scripts import reconcile as command

    batch_id = _batch(lambda_context, [event(1), event(2)])
    outputs = {"ArtifactsBucketName": "artifacts", "PredictionsTableName": "predictions",
               "StateMachineArn": aws["state_machine_arn"]}
    monkeypatch.setattr(command, "stack_outputs", lambda stack: outputs)
    for env in command.NEEDED:
        monkeypatch.setenv(env, "unset")  # the command sets them from the outputs
    assert command.main(["--stack", "S", "--grace-minutes", "0"]) == 1
    out = capsys.readouterr()
    assert "missing_batches  1" in out.out and f"missing: {batch_id} 2/2 rows" in out.err
    assert command.main(["--stack", "S", "--grace-minutes", "0", "--redrive", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["redriven"] == 1 and report["batches"][0]["execution_arn"].split(":")[-1].startswith(batch_id)


# -- redrive of the quarantine queue (scripts/redrive.py; issue 13) ------------------------------------------------

def test_redrive_restarts_quarantined_batches_and_keeps_what_it_cannot(aws, lambda_context):
    """Three quarantine messages as the state machine's Catch writes them (statemachines/inference.asl.json: the
    whole state plus $.error): a batch that failed in InvokeModel (its input), one that failed in StorePredictions
    (predictions, no features: restarted from its journal) and a body that is no batch."""
    batch_id = _batch(lambda_context, [event(1), event(2, user="u2")])
    original = _executions(aws)[batch_id]
    sqs, queue = aws["sqs"], settings().quarantine_queue_url
    failed_invoke = original | {"error": {"Error": "ModelThrottledError", "Cause": "{}"}}
    failed_store = {"batch_id": batch_id, "created_at": original["created_at"], "model_version": "xgb-1",
                    "predictions": [{"event_id": "e1", "score": 0.5}], "predictions_s3_uri": None, "stages": [],
                    "error": {"Error": "ProvisionedThroughputExceededException", "Cause": "{}"}}
    for body in (failed_invoke, failed_store, {"not": "a batch"}):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))

    done = reconcile.redrive_quarantined(settings(), queue)

    assert [(r.what, r.ok) for r in done] == [(batch_id, True), (batch_id, True), (done[2].what, False)]
    started = {name: body for name, body in _executions(aws).items() if name != batch_id}
    assert len(started) == 2 and all(name.startswith(f"{batch_id}-q") for name in started)
    inputs = sorted(started.values(), key=lambda body: bool(body["rows_s3_uri"]))
    assert inputs[0] == original | {"created_at": original["created_at"]}          # its own input, without $.error
    assert inputs[1]["rows_s3_uri"].endswith(f"/{batch_id}.json") and inputs[1]["rows"] == []  # the journal
    left = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"]) for m in left] == [{"not": "a batch"}]  # kept, and visible again at once


class _ProcessStreamLambda:
    """The Lambda API as redrive_dlq uses it, with the process_stream handler run in process (moto's Invoke
    needs Docker): the stream's one mapping, and Invoke handing the payload to the handler."""
    FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ProcessStream"

    def __init__(self, stream_arn: str, lambda_context, fail: bool = False):
        self.stream_arn, self.context, self.fail, self.events = stream_arn, lambda_context, fail, []

    def list_event_source_mappings(self, EventSourceArn):  # noqa: N803 - the API's parameter name
        assert EventSourceArn == self.stream_arn
        return {"EventSourceMappings": [{"FunctionArn": self.FUNCTION_ARN, "EventSourceArn": EventSourceArn}]}

    def invoke(self, FunctionName, Payload):  # noqa: N803
        import io
        assert FunctionName == self.FUNCTION_ARN
        self.events.append(json.loads(Payload))
        answer = ({"batchItemFailures": [{"itemIdentifier": "x"}]} if self.fail
                  else _handler()(self.events[-1], self.context))
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


def _serve_lambda(monkeypatch, fake: _ProcessStreamLambda) -> None:
    """pipeline.aws.client("lambda") is ``fake``; every other service as before."""
    from pipeline import aws as pipeline_aws
    real = pipeline_aws.client

    def client(service: str):
        return fake if service == "lambda" else real(service)
    client.cache_clear = real.cache_clear  # the aws fixture clears the cache when it ends
    monkeypatch.setattr(pipeline_aws, "client", client)


def _on_failure(stream_arn: str, shard: str, first: str, last: str, size: int) -> str:
    """The stream DLQ's on-failure record for a batch of the mapping (Lambda Developer Guide, "Kinesis" / "on-failure
    destinations": KinesisBatchInfo with the shard and the sequence range)."""
    return json.dumps({"requestContext": {"condition": "RetryAttemptsExhausted"}, "KinesisBatchInfo": {
        "shardId": shard, "startSequenceNumber": first, "endSequenceNumber": last, "batchSize": size,
        "streamArn": stream_arn}})


def test_redrive_dlq_replays_the_failed_range_from_the_stream_and_keeps_what_it_cannot(
        aws, lambda_context, monkeypatch):
    kinesis, sqs, queue = aws["kinesis"], aws["sqs"], settings().stream_dlq_url
    stream_arn = kinesis.describe_stream(StreamName="events")["StreamDescription"]["StreamARN"]
    payloads = [event(n, user=f"u{n % 2}") for n in range(1, 7)]
    put = [kinesis.put_record(StreamName="events", Data=json.dumps(p).encode(), PartitionKey=p["user_id"])
           for p in payloads]
    shard, seqs = put[0]["ShardId"], [r["SequenceNumber"] for r in put]
    fake = _ProcessStreamLambda(stream_arn, lambda_context)
    _serve_lambda(monkeypatch, fake)
    for body in (json.dumps({"not": "an on-failure record"}),             # what it cannot replay comes first:
                 _on_failure(stream_arn, shard, seqs[4], seqs[5], 5),    # 5 asked, 2 left: past the retention
                 _on_failure(stream_arn, shard, seqs[1], seqs[3], 3)):   # records 2-4 of the six
        sqs.send_message(QueueUrl=queue, MessageBody=body)

    done = reconcile.redrive_dlq(settings(), queue)

    assert [(r.source, r.what, r.events, r.ok) for r in done] == [
        ("dlq", done[0].what, 0, False), ("dlq", f"{shard}:{seqs[4]}-{seqs[5]}", 2, False),
        ("dlq", f"{shard}:{seqs[1]}-{seqs[3]}", 3, True)]  # the ones after a failure are replayed all the same
    assert done[0].detail == "not a Kinesis on-failure record" and "retention" in done[1].detail
    assert done[2].detail == f"processed by {fake.FUNCTION_ARN}" and done[2].message_id
    [delivered] = fake.events  # only the complete range reached the function, as the mapping delivers it
    assert [r["kinesis"]["sequenceNumber"] for r in delivered["Records"]] == seqs[1:4]
    first = delivered["Records"][0]
    assert json.loads(base64.b64decode(first["kinesis"]["data"])) == payloads[1]
    assert (first["kinesis"]["partitionKey"], first["eventID"], first["eventSourceARN"], first["awsRegion"]) == (
        payloads[1]["user_id"], f"{shard}:{seqs[1]}", stream_arn, stream_arn.split(":")[3])
    assert isinstance(first["kinesis"]["approximateArrivalTimestamp"], float)
    started = _executions(aws)
    assert len(started) == 1 and [r["event_id"] for r in next(iter(started.values()))["rows"]] == [
        p["event_id"] for p in payloads[1:4]]
    left = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert len(left) == 2  # the two it could not replay, visible again at once


def test_redrive_dlq_keeps_a_range_the_function_failed_on(aws, lambda_context, monkeypatch):
    kinesis, sqs, queue = aws["kinesis"], aws["sqs"], settings().stream_dlq_url
    stream_arn = kinesis.describe_stream(StreamName="events")["StreamDescription"]["StreamARN"]
    put = kinesis.put_record(StreamName="events", Data=json.dumps(event(1)).encode(), PartitionKey="u1")
    fake = _ProcessStreamLambda(stream_arn, lambda_context, fail=True)
    _serve_lambda(monkeypatch, fake)
    sqs.send_message(QueueUrl=queue, MessageBody=_on_failure(
        stream_arn, put["ShardId"], put["SequenceNumber"], put["SequenceNumber"], 1))

    [replayed] = reconcile.redrive_dlq(settings(), queue)

    assert not replayed.ok and "the function failed" in replayed.detail and len(fake.events) == 1
    assert len(sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])) == 1


def test_quarantine_redrive_goes_past_what_it_cannot_restart(aws, lambda_context, monkeypatch):
    """Messages it cannot restart (no batch state, a batch whose journal is gone, a start that fails) are reported
    and kept, and the messages after them are still restarted; a restart from the journal records where from."""
    batch_id = _batch(lambda_context, [event(1), event(2, user="u2"), event(3)])
    original = _executions(aws)[batch_id]
    journal_key = reconcile.find_journal(settings(), batch_id, original["created_at"])
    sqs, queue = aws["sqs"], settings().quarantine_queue_url
    failed_store = {"batch_id": batch_id, "created_at": original["created_at"], "predictions": [],
                    "error": {"Error": "States.Timeout", "Cause": ""}}
    gone = failed_store | {"batch_id": "b-" + "0" * 32}
    inline = original | {"batch_id": "b-" + "1" * 32, "error": {"Error": "ModelError", "Cause": ""}}
    for body in ({"not": "a batch"}, gone, inline, failed_store):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    real_start, starts = stream.aws.client("stepfunctions").start_execution, []

    def start_execution(**kwargs):  # the restart of the inline batch fails once
        starts.append(kwargs["name"])
        if kwargs["name"].startswith(inline["batch_id"]):
            raise RuntimeError("the service is down")
        return real_start(**kwargs)
    monkeypatch.setattr(stream.aws.client("stepfunctions"), "start_execution", start_execution)
    monkeypatch.setenv("FEATURE_SET", "v2")  # deployed since: the journal's rows are still v1 features

    done = reconcile.redrive_quarantined(settings(), queue)

    assert [(r.source, r.what, r.events, r.ok) for r in done] == [
        ("quarantine", done[0].what, 0, False), ("quarantine", gone["batch_id"], 0, False),
        ("quarantine", inline["batch_id"], 0, False), ("quarantine", batch_id, 3, True)]
    assert done[1].detail == "its batch journal is gone"
    assert done[2].detail == "RuntimeError: the service is down"
    assert done[3].detail.endswith(f":{starts[-1]}") and done[3].message_id
    restarted = _executions(aws)[starts[-1]]
    assert restarted["feature_set"] == "v1"
    assert restarted["rows_s3_uri"] == f"s3://artifacts/{journal_key}" and restarted["stages"][0] == {
        "stage": "process_stream", "events": 3, "bytes": 0, "seconds": 0.0, "memory_mb": 0, "s3_puts": 0,
        "redrive_of": journal_key}
    left = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert len(left) == 3  # the three it could not restart, visible again at once
