"""CloudWatch metrics in the local cloud: EMF log lines become metrics, and GetMetricData answers fast enough for a
live dashboard.

- ``EmfShipper``: in AWS, CloudWatch Logs extracts metrics from log events in the embedded metric format (EMF;
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
  a JSON object with ``_aws.CloudWatchMetrics`` (a list of directives: Namespace, Dimensions = a list of dimension
  sets, each one a metric of its own, Metrics = [{Name, Unit}]) and ``_aws.Timestamp`` (ms), the values as root
  members (a number or an array of numbers). The local cloud's functions write their logs to files
  (``logs/<LogicalId>.log``); a thread tails them and publishes what the EMF lines say with PutMetricData.
- ``ServiceMetrics``: the AWS/Lambda, AWS/SageMaker, AWS/States and AWS/SQS metrics AWS records for its services,
  recorded by the local cloud's parts and shipped with the EMF metrics.
- ``patch_cloudwatch``: moto 5.2.5's GetMetricData scans every stored datum once per period per query (one call of
  35 queries over 10k values at a 10 s period over 10 minutes: 36.0 s as installed, 1.03 s patched, x35, median of
  3 on a loaded 2-core machine, ``python -m bench.cloudwatch_query``, 2026-11-29), and has no percentile statistics
  (``pNN`` answers nothing). The patch answers metric-stat queries in one pass over the window (same results, periods
  and labels as moto), adds ``pNN`` (nearest rank over the period's values), and drops datums older than
  ``RETENTION_SECONDS`` (3 h; LOCALCLOUD_METRICS_RETENTION_HOURS) so a long ``make up`` does not grow without bound.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

log = logging.getLogger("localcloud.metrics")

# PutMetricData (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html): up to 1,000
# metrics and 1 MB per request, up to 150 values per metric; the values bound keeps a request near 0.5 MB
PUT_BATCH = 1000
PUT_BATCH_VALUES = 10_000
VALUES_PER_DATUM = 150
# Local memory bound (CloudWatch itself keeps 1-minute data for 15 days): ~350 bytes per value held (measured with
# tracemalloc over 10k values, 2026-11-29); one IngestToPredictionSeconds value per event, so 3 h at 100 events/s
# is ~0.4 GB. LOCALCLOUD_METRICS_RETENTION_HOURS lowers it for long loaded runs.
RETENTION_SECONDS = 3600 * float(os.environ.get("LOCALCLOUD_METRICS_RETENTION_HOURS", 3))
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


def emf_datums(line: str) -> tuple[list[tuple[str, dict]], int]:
    """The (namespace, PutMetricData datum) pairs one log line declares (none if it is not an EMF document), and
    the number of values it carries."""
    if '"_aws"' not in line:
        return [], 0
    try:
        document = json.loads(line)
        metadata = document["_aws"]
        directives = metadata["CloudWatchMetrics"]
    except (ValueError, KeyError, TypeError):
        return [], 0
    timestamp = datetime.fromtimestamp(metadata.get("Timestamp", time.time() * 1000) / 1000, tz=timezone.utc)
    datums, values_seen = [], 0
    for directive in directives:
        for dimension_set in directive.get("Dimensions") or [[]]:
            dimensions = [{"Name": name, "Value": str(document[name])} for name in dimension_set if name in document]
            for metric in directive.get("Metrics", []):
                value = document.get(metric["Name"])
                values = value if isinstance(value, list) else [value]
                values = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
                values_seen += len(values)
                for start in range(0, len(values), VALUES_PER_DATUM):
                    datum = {"MetricName": metric["Name"], "Dimensions": dimensions, "Timestamp": timestamp,
                             "Values": values[start:start + VALUES_PER_DATUM]}
                    if metric.get("Unit"):
                        datum["Unit"] = metric["Unit"]
                    datums.append((directive["Namespace"], datum))
    return datums, values_seen


class ServiceMetrics:
    """The AWS service metrics the dashboard and alarms read, recorded by the local cloud's own parts as AWS records
    them for its services (namespaces, names, dimensions and units of the AWS pages cited):
    - Lambda (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html): Invocations, Errors,
      Duration (ms), per FunctionName; IteratorAge (ms, the age of the last record of a stream batch when the
      function receives it).
    - SageMaker (https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html): Invocations and
      ModelLatency (microseconds) per EndpointName and VariantName.
    - SQS (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html):
      ApproximateNumberOfMessagesVisible per QueueName, sampled (AWS: every minute; here at every shipping).
    - Step Functions (https://docs.aws.amazon.com/step-functions/latest/dg/procedure-cw-metrics.html):
      ExecutionsSucceeded / ExecutionsFailed / ExecutionsTimedOut per StateMachineArn, counted from moto's
      executions at every shipping.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._datums: list[tuple[str, dict]] = []
        self._executions_seen: dict[tuple[str, str], int] = {}

    def add(self, namespace: str, name: str, dimensions: dict[str, str], value: float, unit: str) -> None:
        datum = {"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                 "Timestamp": datetime.now(timezone.utc), "Value": float(value), "Unit": unit}
        with self._lock:
            self._datums.append((namespace, datum))

    def drain(self) -> list[tuple[str, dict]]:
        with self._lock:
            datums, self._datums = self._datums, []
        return datums

    def lambda_invocation(self, function_name: str, payload: bytes, result) -> None:
        dimensions = {"FunctionName": function_name}
        self.add("AWS/Lambda", "Invocations", dimensions, 1, "Count")
        self.add("AWS/Lambda", "Errors", dimensions, 1 if result.function_error else 0, "Count")
        self.add("AWS/Lambda", "Duration", dimensions, result.duration_ms, "Milliseconds")
        if b'"aws:kinesis"' in payload[:4096]:
            arrivals = [r.get("kinesis", {}).get("approximateArrivalTimestamp") for r in
                        json.loads(payload).get("Records", [])]
            if arrivals and arrivals[-1]:
                self.add("AWS/Lambda", "IteratorAge", dimensions, 1000 * (time.time() - arrivals[-1]),
                         "Milliseconds")

    def model_invocation(self, endpoint: str, variant: str, seconds: float) -> None:
        dimensions = {"EndpointName": endpoint, "VariantName": variant}
        self.add("AWS/SageMaker", "Invocations", dimensions, 1, "Count")
        self.add("AWS/SageMaker", "ModelLatency", dimensions, seconds * 1e6, "Microseconds")

    def queue_depths(self, sqs, queue_urls: list[str]) -> None:
        for url in queue_urls:
            # the metric ApproximateNumberOfMessagesVisible is the queue attribute ApproximateNumberOfMessages
            try:
                visible = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            except sqs.exceptions.QueueDoesNotExist:
                continue  # deleted (a teardown, or moto reset by another cloud in the process): its metric stops
            self.add("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": url.rsplit("/", 1)[-1]},
                     int(visible["Attributes"]["ApproximateNumberOfMessages"]), "Count")

    def executions(self, state_machine_arns: list[str], region: str, account_id: str) -> None:
        from moto.stepfunctions.exceptions import StateMachineDoesNotExist
        from moto.stepfunctions.responses import get_backend  # the executing backend the gateway serves

        backend = get_backend(account_id, region)
        for arn in state_machine_arns:
            try:
                machine = backend.describe_state_machine(arn)
            except StateMachineDoesNotExist:
                continue  # deleted, as a queue above: its metrics stop
            counts = Counter(e.status for e in list(machine.executions))
            for status, metric in (("SUCCEEDED", "ExecutionsSucceeded"), ("FAILED", "ExecutionsFailed"),
                                   ("TIMED_OUT", "ExecutionsTimedOut")):
                new = counts[status] - self._executions_seen.get((arn, status), 0)
                self._executions_seen[(arn, status)] = counts[status]
                self.add("AWS/States", metric, {"StateMachineArn": arn}, new, "Count")


class EmfShipper:
    """Tails the functions' log files and publishes their EMF metrics (what CloudWatch Logs does in AWS), and the
    service metrics the local cloud recorded (``ServiceMetrics``; ``sample`` runs first at each shipping)."""

    def __init__(self, log_files: list[Path], cloudwatch, interval: float = 1.0,
                 service: ServiceMetrics | None = None, sample=None):
        self.cloudwatch = cloudwatch
        self.interval = interval
        self.service = service
        self.sample = sample
        # only what is written from now on: log files outlive a run, moto's metrics do not
        self.offsets = {path: (path.stat().st_size if path.exists() else 0) for path in log_files}
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="localcloud-emf")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        try:
            self.ship()
        except Exception:  # noqa: BLE001 - stopping: moto may be gone already
            log.debug("last EMF shipping failed", exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.ship()
            except Exception:  # noqa: BLE001 - a bad line or a reset moto must not stop the shipping
                log.exception("EMF shipping failed")

    def ship(self) -> int:
        """Publish the metrics of the EMF lines written since the last call; returns the values published."""
        by_namespace: dict[str, list[dict]] = defaultdict(list)
        values = 0
        if self.service is not None:
            if self.sample is not None:
                self.sample()
            for namespace, datum in self.service.drain():
                by_namespace[namespace].append(datum)
        for path, offset in self.offsets.items():
            if not path.exists() or path.stat().st_size <= offset:
                continue
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            complete = chunk.rfind(b"\n") + 1  # a line still being written is read next time
            self.offsets[path] = offset + complete
            for line in chunk[:complete].decode("utf-8", "replace").splitlines():
                datums, count = emf_datums(line)
                values += count
                for namespace, datum in datums:
                    by_namespace[namespace].append(datum)
        for namespace, namespace_datums in by_namespace.items():
            for request in put_requests(namespace_datums):
                self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=request)
        self.published += values
        return values


def put_requests(datums: list[dict]) -> list[list[dict]]:
    """The datums cut into PutMetricData requests within its limits."""
    requests: list[list[dict]] = [[]]
    values = 0
    for datum in datums:
        size = len(datum.get("Values", [0]))
        if len(requests[-1]) == PUT_BATCH or values + size > PUT_BATCH_VALUES:
            requests.append([])
            values = 0
        requests[-1].append(datum)
        values += size
    return [r for r in requests if r]


def _utc(timestamp: datetime) -> datetime:
    """moto keeps the timestamps it parses naive (UTC)."""
    return timestamp.replace(tzinfo=timezone.utc) if timestamp.tzinfo is None else timestamp


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


ORIGINALS: dict[str, object] = {}  # moto's own methods (tests compare the patched answers with them)


def patch_cloudwatch() -> None:
    from moto.cloudwatch.models import CloudWatchBackend, Dimension, Statistics

    if ORIGINALS:
        return
    original_statistic = ORIGINALS["get_statistics_for_type"] = Statistics.get_statistics_for_type
    original_get_metric_data = ORIGINALS["get_metric_data"] = CloudWatchBackend.get_metric_data
    original_put_metric_data = ORIGINALS["put_metric_data"] = CloudWatchBackend.put_metric_data

    def get_statistics_for_type(self, stat: str):
        match = _PERCENTILE.match(stat)
        if match:
            return _percentile(self.metric_single_values_list, float(match.group(1)))
        return original_statistic(self, stat)

    def get_metric_data(self, queries, start_time, end_time, scan_by="TimestampAscending"):
        if any("MetricStat" not in q for q in queries):  # metric math / insights: moto's own path
            return original_get_metric_data(self, queries, start_time, end_time, scan_by)
        start_time, end_time = start_time.replace(microsecond=0), end_time.replace(microsecond=0)
        if start_time >= end_time:
            return original_get_metric_data(self, queries, start_time, end_time, scan_by)  # moto's errors
        by_name = defaultdict(list)
        for datum in self.get_all_metrics():
            if start_time <= datum.timestamp < end_time:
                by_name[(datum.namespace, datum.name)].append(datum)
        results = []
        for query in queries:
            metric_stat = query["MetricStat"]
            metric, stat, unit = metric_stat["Metric"], metric_stat["Stat"], metric_stat.get("Unit")
            period = int(metric_stat["Period"])
            dimensions = sorted(Dimension(name=d["Name"], value=d["Value"]) for d in metric.get("Dimensions", []))
            buckets = defaultdict(list)
            for datum in by_name.get((metric["Namespace"], metric["MetricName"]), []):
                if (not dimensions or sorted(datum.dimensions) == dimensions) and (not unit or datum.unit == unit):
                    buckets[int((datum.timestamp - start_time).total_seconds()) // period].append(datum)
            timestamps, values = [], []
            for index in sorted(buckets):
                stats = Statistics([stat], start_time + timedelta(seconds=index * period))
                stats.metric_data = buckets[index]
                timestamps.append(stats.timestamp)
                values.append(stats.get_statistics_for_type(stat))
            if scan_by == "TimestampDescending":
                timestamps.reverse()
                values.reverse()
            if query.get("ReturnData", True):
                results.append({"id": query["Id"], "label": query.get("Label") or f"{metric['MetricName']} {stat}",
                                "values": values, "timestamps": timestamps, "status_code": "Complete"})
        return results

    def put_metric_data(self, namespace, metric_data):
        original_put_metric_data(self, namespace, metric_data)
        self._localcloud_puts = getattr(self, "_localcloud_puts", 0) + 1
        if self._localcloud_puts % 200 == 0:  # now and then: drop what is past the local retention
            cutoff = datetime.now(timezone.utc) - timedelta(seconds=RETENTION_SECONDS)
            self.metric_data = [d for d in self.metric_data if _utc(d.timestamp) >= cutoff]

    Statistics.get_statistics_for_type = get_statistics_for_type
    CloudWatchBackend.get_metric_data = get_metric_data
    CloudWatchBackend.put_metric_data = put_metric_data
