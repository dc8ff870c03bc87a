"""State machine task: one cost record per batch, and the cost metrics for the dashboard (EMF)."""
from aws_lambda_powertools.metrics import MetricUnit

from pipeline import flow, inference
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    record = inference.record_cost(flow.parse(flow.Stored, event), settings())
    metrics.add_metric(name="CostPerThousandEvents", unit=MetricUnit.NoUnit,
                       value=1000 * record["cost_per_event_usd"])
    metrics.add_metric(name="TunableCostPerThousandEvents", unit=MetricUnit.NoUnit,
                       value=1000 * record["tunable_cost_per_event_usd"])
    metrics.add_metric(name="BatchEvents", unit=MetricUnit.Count, value=record["events"])
    metrics.add_metric(name="ConfiguredBatchSize", unit=MetricUnit.Count, value=record["configured_batch_size"])
    metrics.add_metric(name="PipelineSeconds", unit=MetricUnit.Seconds, value=record["pipeline_seconds"])
    metrics.add_metric(name="BatchLatencyMax", unit=MetricUnit.Seconds, value=record["latency_max"])
    logger.info("cost recorded", extra={"batch_id": record["batch_id"], "cost_usd": record["cost_usd"]["total"],
                                        "events": record["events"]})
    summary: flow.CostSummary = {"batch_id": record["batch_id"], "events": record["events"],
                                 "cost_per_event_usd": record["cost_per_event_usd"]}
    return summary
