"""The deployed drift alarm, evaluated by the local cloud (moto never evaluates alarms): `cloud.evaluate_alarm`
finds AlarmFeatureDrift by its logical id and judges the stack's definition against the metric monitor_drift
publishes."""
import time


def test_the_deployed_drift_alarm_follows_the_published_max_psi(cloud):
    cloudwatch = cloud.client("cloudwatch")
    alarm = next(a for a in cloudwatch.describe_alarms()["MetricAlarms"] if "AlarmFeatureDrift" in a["AlarmName"])
    assert alarm["MetricName"] == "FeatureDriftMaxPSI" and alarm["ComparisonOperator"] == "GreaterThanThreshold"

    def publish(value: float) -> None:
        cloudwatch.put_metric_data(Namespace=alarm["Namespace"], MetricData=[
            {"MetricName": alarm["MetricName"], "Dimensions": alarm["Dimensions"], "Value": value, "Unit": "None"}])

    publish(alarm["Threshold"] / 2)
    assert cloud.evaluate_alarm("AlarmFeatureDrift", now=time.time() + 1)["state"] == "OK"
    publish(alarm["Threshold"] * 4)      # the period's Maximum is now over the threshold
    assert cloud.evaluate_alarm("AlarmFeatureDrift", now=time.time() + 1)["state"] == "ALARM"
    state = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"][0]["StateValue"]
    assert state == "ALARM"
