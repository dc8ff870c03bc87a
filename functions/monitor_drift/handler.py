"""Scheduled: compare recent features with the model's training baseline (PSI, KS) and publish the result."""
from aws_lambda_powertools.metrics import MetricUnit

from pipeline import drift
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    result = drift.monitor(settings())
    if result["samples"]:
        metrics.add_metric(name="FeatureDriftMaxPSI", unit=MetricUnit.NoUnit, value=result["max_psi"])
    logger.info("drift check", extra={k: v for k, v in result.items() if k != "features"})
    return result
