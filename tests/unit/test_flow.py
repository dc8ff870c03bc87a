"""The states of the inference state machine (pipeline/flow.py): what each task handler returns is what the next one
accepts, and a state of the wrong shape fails its task at once, naming the fields."""
import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from pipeline import aws as pipeline_aws, flow, stream
from pipeline.settings import settings


def _execution_input(rows: int) -> dict:
    """What process_stream starts an execution with (stream.inference_input), as Step Functions hands it over."""
    body = stream.inference_input(
        [{"event_id": f"e{i}", "user_id": f"u{i % 2}", "ts": 1000.0 + i, "ingest_ts": 1000 + i,
          "features": [float(i)] * 15} for i in range(rows)], "b-1", settings(), "v1",
        {"events": rows, "bytes": 200 * rows, "seconds": 0.01, "memory_mb": 512, "ddb_rru": 1.0, "ddb_wru": 2.5,
         "s3_puts": 1})
    return json.loads(body)


def test_each_task_returns_what_the_next_task_accepts(aws, lambda_context):
    from invoke_model import handler as invoke_model
    from record_cost import handler as record_cost
    from store_predictions import handler as store_predictions

    execution_input = _execution_input(3)
    assert flow.parse(flow.ExecutionInput, execution_input) is execution_input
    runtime = pipeline_aws.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(b"0.1\n0.2\n0.3\n"), 12),
                                              "ContentType": "text/csv"})
        scored = json.loads(json.dumps(invoke_model.handler(execution_input, lambda_context)))  # through JSON
    flow.parse(flow.Scored, scored)
    stored = json.loads(json.dumps(store_predictions.handler(scored, lambda_context)))
    assert "latencies" not in stored   # the handler takes the per-event latencies out for its metric
    flow.parse(flow.Stored, stored)
    summary = record_cost.handler(stored, lambda_context)
    flow.parse(flow.CostSummary, summary)
    assert summary["events"] == 3 and summary["cost_per_event_usd"] > 0


@pytest.mark.parametrize("handler_module, state, named", [
    ("invoke_model", {"batch_id": "b-1"}, "rows"),                         # a state that is not an execution input
    ("store_predictions", None, "predictions"),                            # the execution input, one step too late
    ("record_cost", {"batch_id": "b-1", "created_at": "yesterday"}, "created_at"),
])
def test_a_state_of_the_wrong_shape_fails_its_task_naming_the_fields(aws, lambda_context, handler_module, state,
                                                                      named):
    import importlib

    handler = importlib.import_module(f"{handler_module}.handler")
    with pytest.raises(flow.InvalidState, match=named):
        handler.handler(state if state is not None else _execution_input(1), lambda_context)


def test_numbers_are_not_taken_from_strings():
    state = _execution_input(1)
    state["rows"][0]["ts"] = "1000.0"
    with pytest.raises(flow.InvalidState, match=r"rows\.0\.ts"):
        flow.parse(flow.ExecutionInput, state)
