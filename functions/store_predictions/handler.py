"""State machine task: store the batch's predictions (BatchWriteItem) and count them."""
from aws_lambda_powertools.metrics import MetricUnit

from pipeline import inference
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    result = inference.store_predictions(event, settings())
    metrics.add_metric(name="PredictionsStored", unit=MetricUnit.Count, value=result["events"])
    metrics.add_metric(name="IngestToPredictionSecondsMax", unit=MetricUnit.Seconds, value=result["latency_max"])
    return result
