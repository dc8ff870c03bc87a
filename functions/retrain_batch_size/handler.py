"""Scheduled (and on-demand): retrain the batch-size optimizer on the cost records and apply its choice."""
from aws_lambda_powertools.metrics import MetricUnit

from pipeline import optimizer
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    result = optimizer.retrain_and_apply(settings())
    metrics.add_metric(name="ChosenBatchSize", unit=MetricUnit.Count, value=result["batch_size"])
    logger.info("batch size decision", extra=result)
    return result
