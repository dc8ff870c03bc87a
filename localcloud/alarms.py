"""CloudWatch alarm evaluation for the local cloud.

moto stores alarms (PutMetricAlarm, from the template) and metric data (PutMetricData) but never evaluates an
alarm: its state stays INSUFFICIENT_DATA whatever the metrics say (checked with moto 5.2.5). ``evaluate_alarm`` does
what CloudWatch does for a single-metric, static-threshold alarm, from the alarm's own definition as moto stores it:
GetMetricStatistics of the alarm's namespace/metric/dimensions/statistic over the last EvaluationPeriods periods
ending at ``now``, each datapoint compared with Threshold by ComparisonOperator, ALARM when at least DatapointsToAlarm
(default EvaluationPeriods) of those periods breach, missing periods handled by TreatMissingData (missing,
notBreaching, breaching, ignore). The resulting state is recorded with SetAlarmState (so DescribeAlarms shows it,
with the evaluated datapoints in StateReasonData) -- the one part CloudWatch would do by itself.

Not modelled: metric-math and anomaly-detection alarms, percentile statistics with low sample counts, evaluation
on a schedule (call it when you want the state, e.g. after a scheduled function published its metric).
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from .errors import LocalCloudError

COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def find_alarm(cloudwatch, alarm: str, name: str) -> str:
    """The name of the one alarm ``alarm`` means: ``name`` (its physical name when ``alarm`` is a logical id) if an
    alarm has it, else the one alarm whose name starts with ``name`` or contains ``alarm``."""
    names = [a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNamePrefix=name)["MetricAlarms"]]
    if name in names:
        return name
    candidates = [n for n in names if n.startswith(name)] or [
        n for n in (a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]) if alarm in n]
    if len(candidates) != 1:
        raise LocalCloudError(f"alarm {alarm!r}: {len(candidates)} alarms match ({candidates[:5]})")
    return candidates[0]


def evaluate_alarm(cloudwatch, alarm_name: str, now: float | None = None) -> dict:
    """Evaluate one alarm against the metric data in (moto) CloudWatch, record and return its state:
    {"state", "reason", "datapoints": [{"timestamp", "value", "breaching"}], "threshold"}."""
    [alarm] = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"] or [None]
    if alarm is None:
        raise KeyError(f"no alarm {alarm_name}")
    if "MetricName" not in alarm:
        raise ValueError(f"{alarm_name}: only single-metric alarms are evaluated locally")
    period = int(alarm["Period"])
    periods = int(alarm["EvaluationPeriods"])
    needed = int(alarm.get("DatapointsToAlarm") or periods)
    statistic = alarm.get("Statistic")
    if statistic is None:
        raise ValueError(f"{alarm_name}: extended (percentile) statistics are not evaluated locally")
    end = datetime.fromtimestamp(now if now is not None else time.time(), tz=timezone.utc)
    start = end - timedelta(seconds=period * periods)
    response = cloudwatch.get_metric_statistics(
        Namespace=alarm["Namespace"], MetricName=alarm["MetricName"], Dimensions=alarm.get("Dimensions", []),
        StartTime=start, EndTime=end, Period=period, Statistics=[statistic])
    compare = COMPARE[alarm["ComparisonOperator"]]
    threshold = float(alarm["Threshold"])
    points = sorted(response["Datapoints"], key=lambda d: d["Timestamp"])[-periods:]
    evaluated = [{"timestamp": p["Timestamp"].isoformat(), "value": p[statistic],
                  "breaching": compare(p[statistic], threshold)} for p in points]
    breaching = sum(1 for p in evaluated if p["breaching"])
    missing = periods - len(evaluated)
    treat = alarm.get("TreatMissingData", "missing")
    if treat == "breaching":
        breaching += missing
    if breaching >= needed:
        state = "ALARM"
    elif not evaluated and treat in ("missing", "ignore"):
        state = alarm.get("StateValue", "INSUFFICIENT_DATA") if treat == "ignore" else "INSUFFICIENT_DATA"
    else:
        state = "OK"
    reason = (f"local evaluation: {breaching} of the last {periods} period(s) of {period} s breaching "
              f"({alarm['ComparisonOperator']} {threshold:g}, {statistic} of {alarm['MetricName']}); "
              f"{len(evaluated)} datapoint(s), missing treated as {treat}")
    cloudwatch.set_alarm_state(AlarmName=alarm_name, StateValue=state, StateReason=reason,
                               StateReasonData=json.dumps({"datapoints": evaluated, "threshold": threshold}))
    return {"state": state, "reason": reason, "datapoints": evaluated, "threshold": threshold}
