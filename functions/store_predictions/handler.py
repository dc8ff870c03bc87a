"""State machine task: store the batch's predictions (BatchWriteItem) and count them."""
from aws_lambda_powertools.metrics import MetricUnit

from pipeline import flow, inference
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    result = inference.store_predictions(flow.parse(flow.Scored, event), settings())
    metrics.add_metric(name="PredictionsStored", unit=MetricUnit.Count, value=result["events"])
    metrics.add_metric(name="IngestToPredictionSecondsMax", unit=MetricUnit.Seconds, value=result["latency_max"])
    # every event's latency (EMF carries up to 100 values a metric; Powertools flushes at 100): p50/p95/p99 of it
    # are the dashboard's latency card, in CloudWatch and locally
    for latency in result.pop("latencies"):
        metrics.add_metric(name="IngestToPredictionSeconds", unit=MetricUnit.Seconds, value=latency)
    return result
