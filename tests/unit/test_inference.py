import io

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from pipeline import aws as pipeline_aws, inference, model_client, store
from pipeline.settings import settings


def _body(text: str) -> StreamingBody:
    return StreamingBody(io.BytesIO(text.encode()), len(text))


def _batch(rows: int) -> dict:
    return {"batch_id": "b-1", "created_at": 1000.0, "feature_set": "v1", "model_version": "xgb-1",
            "stages": [{"stage": "process_stream", "seconds": 0.01, "memory_mb": 512, "events": rows,
                        "bytes": 200 * rows, "ddb_rru": rows, "ddb_wru": rows}],
            "rows": [{"event_id": f"e{i}", "user_id": f"u{i % 2}", "ts": 1000.0 + i, "ingest_ts": 1000.0 + i,
                      "features": [float(i)] * 15} for i in range(rows)], "rows_s3_uri": None}


def test_invoke_chunks_store_and_cost(aws, monkeypatch):
    monkeypatch.setenv("INVOKE_CHUNK_SIZE", "2")
    runtime = pipeline_aws.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        for text in ("0.1\n0.2\n", "0.3,0.4", "0.5"):  # both answer formats of the container
            stub.add_response("invoke_endpoint", {"Body": _body(text), "ContentType": "text/csv",
                                                  "InvokedProductionVariant": "primary"})
        scored = inference.invoke_model(_batch(5), settings())
        stub.assert_no_pending_responses()
    assert [p["score"] for p in scored["predictions"]] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert scored["stages"][-1]["calls"] == 3
    stored = inference.store_predictions(scored, settings())
    assert stored["events"] == 5 and store.get_item("predictions", {"event_id": "e4"})["score"] == 0.5
    record = inference.record_cost(stored, settings())
    assert record["cost_usd"]["total"] > 0 and record["batch_size"] == 5
    assert set(record["stage_seconds"]) == {"process_stream", "invoke_model", "store_predictions", "record_cost"}
    assert store.get_item("state", {"pk": "stats"})["events_predicted"] == 5


@pytest.mark.parametrize("code, status, error", [
    ("ThrottlingException", 400, model_client.ModelThrottledError),
    ("ServiceUnavailable", 503, model_client.ModelUnavailableError),
    ("ModelError", 424, model_client.ModelError),
])
def test_endpoint_errors_map_to_the_names_the_state_machine_matches(aws, code, status, error):
    runtime = pipeline_aws.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_client_error("invoke_endpoint", service_error_code=code, http_status_code=status)
        with pytest.raises(error):
            inference.invoke_model(_batch(1), settings())


def test_wrong_feature_set_fails_loudly(aws):
    batch = _batch(1) | {"feature_set": "v0"}
    with pytest.raises(model_client.ModelError, match="feature set"):
        inference.invoke_model(batch, settings())


def test_score_count_mismatch_is_a_model_error(aws):
    runtime = pipeline_aws.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_response("invoke_endpoint", {"Body": _body("0.1"), "ContentType": "text/csv"})
        with pytest.raises(model_client.ModelError, match="1 scores for 2 rows"):
            inference.invoke_model(_batch(2), settings())


def test_the_largest_batch_keeps_every_state_under_the_step_functions_limit(aws, lambda_context, monkeypatch):
    """maxBatchSize at its configured ceiling (infra/config.py: 10,000), 128-character ids, feature set v2: the
    execution input, InvokeModel's output and the Quarantine state (input + $.error) each stay under 256 KB, the
    rows and predictions travelling through S3 (Step Functions quotas: "Maximum input or output size for a task,
    activity, or workflow execution: 256 KiB"; States.DataLimitExceeded is not caught by States.ALL,
    https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html)."""
    import json

    from lambdakit import T0, kinesis_event

    monkeypatch.setenv("FEATURE_SET", "v2")
    size = 10_000
    sfn = aws["sfn"]
    events = [{"event_id": f"{n:0>128}", "user_id": f"{n % 700:x>128}", "event_type": "purchase", "amount": 12.5,
               "timestamp": T0 + n * 0.01} for n in range(size)]
    from process_stream import handler
    assert handler.handler(kinesis_event(events), lambda_context) == {"batchItemFailures": []}
    [execution] = sfn.list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    state_input = sfn.describe_execution(executionArn=execution["executionArn"])["input"]
    assert len(state_input.encode()) < 256 * 1024 and json.loads(state_input)["rows_s3_uri"]
    quarantined = json.loads(state_input) | {"error": {"Error": "ModelError", "Cause": "x" * 4096}}
    assert len(json.dumps(quarantined).encode()) < 256 * 1024

    monkeypatch.setattr(model_client, "invoke", lambda endpoint, rows, chunk, target_variant=None: model_client.Scored(
        [0.5] * len(rows), ["primary"] * len(rows), 0.1, 1))
    output = inference.invoke_model(json.loads(state_input), settings())
    assert len(json.dumps(output).encode()) < 256 * 1024 and output["predictions_s3_uri"] and not output["predictions"]
    stored = inference.store_predictions(output, settings())
    assert stored["events"] == size and len(json.dumps(stored).encode()) < 256 * 1024
    assert store.get_item("predictions", {"event_id": f"{size - 1:0>128}"})["score"] == 0.5
    # the cost record counts both S3 reads (the rows, then the predictions) and every S3 write, at the S3 Standard
    # request prices (https://aws.amazon.com/s3/pricing/: $0.005 per 1,000 PUT, $0.0004 per 1,000 GET)
    assert [s.get("s3_gets", 0) for s in stored["stages"]] == [0, 1, 1]
    puts = sum(s.get("s3_puts", 0) for s in stored["stages"])
    assert puts >= 2   # the journal (process_stream), the predictions (invoke_model)
    record = inference.record_cost(stored, settings())
    assert record["cost_usd"]["s3_requests"] == pytest.approx(puts * 0.005 / 1000 + 2 * 0.0004 / 1000)
