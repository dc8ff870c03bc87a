"""State machine task: batch-invoke the SageMaker endpoint in chunks. Model errors propagate with their class
name as errorType, which the state machine's Retry/Catch match."""
from aws_lambda_powertools.metrics import MetricUnit

from pipeline import flow, inference
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    result = inference.invoke_model(flow.parse(flow.ExecutionInput, event), settings())
    stage = result["stages"][-1]
    metrics.add_metric(name="ModelInvocationSeconds", unit=MetricUnit.Seconds, value=stage["model_seconds"])
    metrics.add_metric(name="ModelInvocations", unit=MetricUnit.Count, value=stage["calls"])
    logger.info("batch scored", extra={"batch_id": result["batch_id"], "rows": len(result["predictions"]),
                                       "calls": stage["calls"]})
    return result
