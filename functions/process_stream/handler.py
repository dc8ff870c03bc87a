"""Kinesis event source mapping -> decode/validate each record -> one batch-level step (dedupe, features,
start inference). Reports partial batch failures with Powertools' BatchProcessor."""
import time

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from pipeline import stream
from pipeline.observability import logger, metrics, tracer
from pipeline.settings import settings

processor = BatchProcessor(event_type=EventType.KinesisDataStreams)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    started = time.time()
    decoded: list[stream.StreamRecord] = []

    def decode_record(record):
        decoded.append(stream.decode(record.raw_event, now=started))

    with processor(records=event["Records"], handler=decode_record, lambda_context=context):
        outcomes = processor.process()
    # Lambda resumes from the first failed record, so only the records before it are processed now.
    first_failure = next((i for i, (status, *_rest) in enumerate(outcomes) if status == "fail"), len(outcomes))
    outcome = stream.process(decoded[:first_failure], settings(), started=started)
    logger.info("batch processed", extra={"batch_id": outcome.batch_id, "records": len(event["Records"]),
                                          "events": outcome.events, "duplicates": outcome.duplicates,
                                          "rejected": outcome.rejected, "late": outcome.late})
    metrics.add_metric(name="EventsProcessed", unit=MetricUnit.Count, value=outcome.events)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=outcome.rejected)
    metrics.add_metric(name="EventsDuplicate", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="EventsLate", unit=MetricUnit.Count, value=outcome.late)
    metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=len(event["Records"]))
    return processor.response()
