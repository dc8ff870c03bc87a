"""localcloud/metrics.py: EMF log lines become CloudWatch metrics as the EMF specification says, the patched
GetMetricData answers as moto does (in one pass) and adds percentiles, and the dashboard's widget rows parse.

AWS pages relied on:
- EMF: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
  (_aws.CloudWatchMetrics directives; each dimension set is a metric; a value may be an array; Timestamp in ms).
- PutMetricData: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html
  (up to 1,000 metrics and 1 MB per request, up to 150 values per metric).
- Percentile statistics: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Statistics-definitions.html
"""
import io
import json
import random
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from moto import mock_aws

from localcloud import mototools
from localcloud.dashboard import metric_rows
from localcloud.metrics import (ORIGINALS, PUT_BATCH, PUT_BATCH_VALUES, VALUES_PER_DATUM, EmfShipper,
                                ServiceMetrics, emf_datums, patch_cloudwatch, put_requests)

mototools.configure()  # the patches the local cloud runs with (patch_cloudwatch among them)


def powertools_line(monkeypatch, values: dict[str, list[float]]) -> str:
    """An EMF line exactly as the functions' Powertools Metrics prints it."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "RealtimeInference")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "realtime-inference")
    metrics = Metrics()
    for name, series in values.items():
        for value in series:
            metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)
    out = io.StringIO()
    with redirect_stdout(out):
        metrics.flush_metrics()
    return out.getvalue().strip()


def test_a_powertools_emf_line_becomes_the_metrics_it_declares(monkeypatch):
    line = powertools_line(monkeypatch, {"IngestToPredictionSeconds": [0.5, 1.5, 2.5], "BatchLatencyMax": [3.0]})
    datums, count = emf_datums(line)
    assert count == 4
    by_name = {d["MetricName"]: (ns, d) for ns, d in datums}
    namespace, latency = by_name["IngestToPredictionSeconds"]
    assert namespace == "RealtimeInference"
    assert latency["Values"] == [0.5, 1.5, 2.5] and latency["Unit"] == "Seconds"
    assert latency["Dimensions"] == [{"Name": "service", "Value": "realtime-inference"}]
    assert abs(latency["Timestamp"].timestamp() - json.loads(line)["_aws"]["Timestamp"] / 1000) < 1e-3
    assert by_name["BatchLatencyMax"][1]["Values"] == [3.0]


def test_every_dimension_set_is_a_metric_and_other_lines_are_not():
    document = {"_aws": {"Timestamp": 1_700_000_000_000, "CloudWatchMetrics": [{
        "Namespace": "N", "Dimensions": [["service"], ["service", "variant"], []],
        "Metrics": [{"Name": "Score"}]}]}, "service": "s", "variant": "a", "Score": 1}
    datums, _ = emf_datums(json.dumps(document))
    assert sorted(len(d["Dimensions"]) for _, d in datums) == [0, 1, 2]
    assert "Unit" not in datums[0][1]
    for line in ('{"level": "INFO", "message": "cost recorded"}', "START RequestId: x", '{"_aws": 1}', "{bad"):
        assert emf_datums(line) == ([], 0)


def test_put_requests_stay_within_putmetricdata_limits():
    datums = [{"MetricName": "M", "Values": [1.0] * VALUES_PER_DATUM} for _ in range(200)]
    datums += [{"MetricName": "N", "Value": 1.0} for _ in range(2500)]
    requests = put_requests(datums)
    assert sum(len(r) for r in requests) == len(datums)
    assert all(len(r) <= PUT_BATCH for r in requests)
    assert all(sum(len(d.get("Values", [0])) for d in r) <= PUT_BATCH_VALUES for r in requests)
    assert VALUES_PER_DATUM == 150 and PUT_BATCH == 1000


def test_the_shipper_publishes_new_lines_only_and_waits_for_a_whole_line(tmp_path, monkeypatch):
    log = tmp_path / "Fn.log"
    old = powertools_line(monkeypatch, {"Old": [1.0]})
    log.write_text(old + "\n")
    line = powertools_line(monkeypatch, {"New": [2.0, 3.0]})
    calls = []

    class CloudWatch:
        def put_metric_data(self, **kwargs):
            calls.append(kwargs)

    shipper = EmfShipper([log], CloudWatch())
    with open(log, "a") as fh:
        fh.write("REPORT RequestId: 1 Duration: 2 ms\n" + line[:20])  # the EMF line still being written
    assert shipper.ship() == 0 and calls == []
    with open(log, "a") as fh:
        fh.write(line[20:] + "\n")
    assert shipper.ship() == 2
    assert [d["MetricName"] for c in calls for d in c["MetricData"]] == ["New"]


def test_service_metrics_record_lambda_and_stream_batch_age():
    service = ServiceMetrics()

    class Result:
        function_error = "Unhandled"
        duration_ms = 12.5

    arrival = datetime.now(timezone.utc).timestamp() - 2.0
    event = {"Records": [{"eventSource": "aws:kinesis", "kinesis": {"approximateArrivalTimestamp": arrival}}]}
    service.lambda_invocation("fn", json.dumps(event).encode(), Result())
    recorded = {d["MetricName"]: (ns, d) for ns, d in service.drain()}
    assert {ns for ns, _ in recorded.values()} == {"AWS/Lambda"}
    assert recorded["Errors"][1]["Value"] == 1 and recorded["Duration"][1]["Value"] == 12.5
    assert recorded["Duration"][1]["Dimensions"] == [{"Name": "FunctionName", "Value": "fn"}]
    assert 2000 <= recorded["IteratorAge"][1]["Value"] < 10_000
    assert service.drain() == []


@mock_aws
def test_queue_depths_skip_a_deleted_queue():
    # the sampler runs on a thread while queues may be torn down; a deleted queue's metric stops, as in AWS
    sqs = boto3.client("sqs", region_name="us-east-1")
    kept, gone = (sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("kept", "gone"))
    sqs.send_message(QueueUrl=kept, MessageBody="x")
    sqs.delete_queue(QueueUrl=gone)
    service = ServiceMetrics()
    service.queue_depths(sqs, [gone, kept])
    assert [(d["Dimensions"], d["Value"]) for _, d in service.drain()] == [
        ([{"Name": "QueueName", "Value": "kept"}], 1)]


@mock_aws
def test_execution_counts_skip_a_deleted_state_machine():
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    kept, gone = (sfn.create_state_machine(name=name, definition=definition,
                                           roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
                  for name in ("kept", "gone"))
    sfn.delete_state_machine(stateMachineArn=gone)
    service = ServiceMetrics()
    service.executions([gone, kept], "us-east-1", "123456789012")
    assert {tuple(d["Dimensions"][0].values()) for _, d in service.drain()} == {("StateMachineArn", kept)}


def seeded_metrics(cloudwatch, now: datetime, count: int = 1000) -> None:
    rng = random.Random(5)
    for start in range(0, count, 500):
        cloudwatch.put_metric_data(Namespace="NS", MetricData=[{
            "MetricName": rng.choice(["A", "B"]), "Value": rng.random(), "Unit": "Seconds",
            "Dimensions": [{"Name": "service", "Value": rng.choice(["s", "t"])}],
            "Timestamp": now - timedelta(seconds=rng.uniform(0, 600))} for _ in range(500)])


@mock_aws
def test_patched_get_metric_data_answers_as_moto_does():
    from moto.cloudwatch.models import cloudwatch_backends

    patch_cloudwatch()
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    seeded_metrics(cloudwatch, now)
    backend = cloudwatch_backends[mototools.ACCOUNT_ID]["us-east-1"]
    queries = [{"Id": f"q{i}", "MetricStat": {"Metric": {"Namespace": "NS", "MetricName": name, "Dimensions": dims},
                                               "Period": period, "Stat": stat}}
               for i, (name, dims, period, stat) in enumerate(
                   (name, dims, period, stat) for name in ("A", "B")
                   for dims in ([{"Name": "service", "Value": "s"}], [{"Name": "service", "Value": "t"}])
                   for period in (30, 60) for stat in ("Sum", "Average", "Maximum", "Minimum", "SampleCount"))]
    start, end = (now - timedelta(seconds=600)).replace(tzinfo=None), now.replace(tzinfo=None)  # as moto parses them
    for scan_by in ("TimestampAscending", "TimestampDescending"):
        patched = backend.get_metric_data(queries, start, end, scan_by)
        original = ORIGINALS["get_metric_data"](backend, queries, start, end, scan_by)
        assert patched == original
    assert sum(len(r["values"]) for r in patched) > 400


@mock_aws
def test_percentiles_are_nearest_rank_over_the_period():
    patch_cloudwatch()
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    cloudwatch.put_metric_data(Namespace="NS", MetricData=[{
        "MetricName": "L", "Values": [float(v) for v in range(100, 0, -1)], "Timestamp": now - timedelta(seconds=5)}])
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": f"p{q}", "MetricStat": {"Metric": {"Namespace": "NS", "MetricName": "L"},
                                                          "Period": 60, "Stat": f"p{q}"}} for q in (50, 95, 99)],
        StartTime=now - timedelta(seconds=60), EndTime=now)["MetricDataResults"]
    assert {r["Id"]: r["Values"] for r in result} == {"p50": [50.0], "p95": [95.0], "p99": [99.0]}


def test_dashboard_metric_rows_follow_the_cloudwatch_body_format():
    properties = {"stat": "Maximum", "metrics": [
        ["AWS/Lambda", "Errors", "FunctionName", "f1", {"stat": "Sum", "label": "f1"}],
        [".", ".", ".", "f2"],
        ["NS", "BatchSize", "service", "s", {"yAxis": "right"}],
        [{"expression": "m1 + m2", "label": "total"}]]}
    rows = metric_rows(properties)
    assert rows[0] == {"namespace": "AWS/Lambda", "name": "Errors", "stat": "Sum", "label": "f1", "axis": "left",
                       "dimensions": [{"Name": "FunctionName", "Value": "f1"}]}
    assert rows[1]["dimensions"] == [{"Name": "FunctionName", "Value": "f2"}] and rows[1]["stat"] == "Maximum"
    assert rows[2]["axis"] == "right" and rows[3]["unsupported"]


@mock_aws
def test_datums_past_the_local_retention_are_dropped(monkeypatch):
    from moto.cloudwatch.models import cloudwatch_backends

    from localcloud import metrics

    patch_cloudwatch()
    monkeypatch.setattr(metrics, "RETENTION_SECONDS", 3600)
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    now = datetime.now(timezone.utc)
    cloudwatch.put_metric_data(Namespace="NS", MetricData=[
        {"MetricName": "Old", "Value": 1.0, "Timestamp": now - timedelta(hours=2)}])
    for _ in range(199):  # the trim runs every 200th put
        cloudwatch.put_metric_data(Namespace="NS", MetricData=[{"MetricName": "New", "Value": 1.0, "Timestamp": now}])
    names = {d.name for d in cloudwatch_backends[mototools.ACCOUNT_ID]["us-east-1"].metric_data}
    assert names == {"New"}
