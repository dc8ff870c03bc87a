"""Scheduled: compare recent features with the live model's training baseline (PSI, KS) and publish the result as
CloudWatch metrics (PutMetricData; AlarmFeatureDrift watches FeatureDriftMaxPSI)."""
import os

from pipeline import drift
from pipeline.observability import logger, tracer
from pipeline.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):
    result = drift.monitor(settings())
    result["datapoints"] = drift.publish(result, os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "RealtimeInference"),
                                         os.environ.get("POWERTOOLS_SERVICE_NAME", "realtime-inference"))
    logger.info("drift check", extra={k: v for k, v in result.items() if k != "features"})
    return result
