"""EventBridge schedules from the template: run-now (Python, control API, CLI), the clock, cron evaluation."""
from datetime import datetime, timezone

import pytest

from cloudkit import FakeCdkOut, wait_for
from localcloud import LocalCloud
from localcloud.__main__ import main as cli
from localcloud.errors import LocalCloudError
from localcloud.schedules import Cron, rate_seconds

HANDLERS = '''
def handler(event, context):
    return {"got": event, "function": context.function_name}
'''


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("schedules")
    out = FakeCdkOut(root / "cdk.out", stack="ScheduleTestStack")
    code = out.code_asset({"jobs.py": HANDLERS})
    out.function("RetrainBatchSizeFunctionAAAA1111", "jobs.handler", code)
    out.function("MonitorDriftFunctionBBBB2222", "jobs.handler", code)
    out.add("RetrainBatchSizeSchedule5E5E5E5E", "AWS::Events::Rule", {
        "ScheduleExpression": "rate(1 minute)", "State": "ENABLED",
        "Targets": [{"Arn": {"Fn::GetAtt": ["RetrainBatchSizeFunctionAAAA1111", "Arn"]}, "Id": "Target0",
                     "Input": '{"reason": "scheduled"}'}]})
    out.add("MonitorDriftSchedule6F6F6F6F", "AWS::Events::Rule", {
        "ScheduleExpression": "cron(0 12 * * ? *)", "State": "ENABLED",
        "Targets": [{"Arn": {"Fn::GetAtt": ["MonitorDriftFunctionBBBB2222", "Arn"]}, "Id": "Target0"}]})
    # time_scale 600: the rate(1 minute) rule fires every 0.1 s; the daily cron one not during the tests
    with LocalCloud(cdk_out=out.write(), state_dir=root / "state", api_port=0, time_scale=600) as c:
        c.deploy()
        yield c


def test_run_now_returns_the_function_result(cloud):
    result = cloud.run_schedule("RetrainBatchSize")  # the construct id prefix is enough
    assert result == {"got": {"reason": "scheduled"}, "function": cloud.resources["RetrainBatchSizeFunctionAAAA1111"]}


def test_scheduled_event_payload(cloud):
    event = cloud.run_schedule("MonitorDriftSchedule6F6F6F6F")["got"]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["account"] == "123456789012" and event["region"] == "us-east-1" and event["detail"] == {}
    assert event["resources"] == [cloud.deployer.resources["MonitorDriftSchedule6F6F6F6F"].attributes["Arn"]]
    assert event["time"].endswith("Z")


def test_run_now_through_the_control_api_and_the_cli(cloud, capsys):
    assert cli(["run-schedule", "MonitorDrift", "--endpoint-url", cloud.endpoint_url]) == 0
    assert '"detail-type": "Scheduled Event"' in capsys.readouterr().out
    assert cli(["run-schedule", "NoSuchRule", "--endpoint-url", cloud.endpoint_url]) == 1
    assert "no schedule 'NoSuchRule'" in capsys.readouterr().out


def test_the_scheduler_fires_rules_on_the_scaled_clock(cloud):
    wait_for(lambda: cloud.scheduler.fired["RetrainBatchSizeSchedule5E5E5E5E"] >= 3, timeout=10,
             what="three firings of rate(1 minute) at time_scale 600")


def test_unknown_schedule_lists_the_known_ones(cloud):
    with pytest.raises(LocalCloudError, match="MonitorDriftSchedule6F6F6F6F"):
        cloud.run_schedule("Nope")


def test_expressions():
    assert rate_seconds("rate(1 minute)") == 60 and rate_seconds("rate(15 minutes)") == 900
    assert rate_seconds("rate(2 hours)") == 7200 and rate_seconds("cron(0 * * * ? *)") is None
    start = datetime(2026, 11, 22, 14, 7, tzinfo=timezone.utc)  # a Sunday
    assert Cron("cron(0 12 * * ? *)").next_after(start) == datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    assert Cron("cron(0/15 * * * ? *)").next_after(start) == start.replace(minute=15)
    assert Cron("cron(30 9 ? * MON-FRI *)").next_after(start) == datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
    assert Cron("cron(0 0 L * ? *)").next_after(start) == datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
    assert Cron("cron(0 8 ? * 2#1 *)").next_after(start) == datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
    with pytest.raises(LocalCloudError):
        Cron("cron(0 12 * *)")
