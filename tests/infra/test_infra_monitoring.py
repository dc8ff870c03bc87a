"""CloudWatch alarms, the alarm topic and the dashboard."""
from __future__ import annotations

import json


def _alarms(synth) -> dict[str, dict]:
    return {lid: r["Properties"] for lid, r in synth.of_type("AWS::CloudWatch::Alarm").items()}


def _alarm(synth, prefix: str) -> dict:
    return synth.props(prefix, "AWS::CloudWatch::Alarm")


def test_every_alarm_notifies_the_encrypted_topic(synth):
    topic = synth.logical_id("AlarmTopic", "AWS::SNS::Topic")
    for lid, alarm in _alarms(synth).items():
        assert alarm["AlarmActions"] == [{"Ref": topic}] and alarm["OKActions"] == [{"Ref": topic}], lid
        assert alarm["TreatMissingData"] == "notBreaching"
    props = synth.props("AlarmTopic", "AWS::SNS::Topic")
    key = synth.logical_id("AlarmTopicKey", "AWS::KMS::Key")
    assert props["KmsMasterKeyId"] == {"Fn::GetAtt": [key, "Arn"]}
    key_props = synth.resources[key]["Properties"]
    assert key_props["EnableKeyRotation"] is True
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
               for s in key_props["KeyPolicy"]["Statement"])   # CloudWatch can publish to the encrypted topic


def test_iterator_age_alarm(synth):
    alarm = _alarm(synth, "AlarmIteratorAge")
    assert alarm["Namespace"] == "AWS/Lambda" and alarm["MetricName"] == "IteratorAge"
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {
        "Ref": synth.logical_id("ProcessStreamFunction", "AWS::Lambda::Function")}}]
    assert alarm["Threshold"] == synth.config.alarms.iterator_age_seconds * 1000
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_queue_depth_alarms(synth):
    for prefix, queue in (("AlarmStreamDlqDepth", "StreamDlq"), ("AlarmQuarantineDepth", "QuarantineQueue")):
        alarm = _alarm(synth, prefix)
        assert alarm["Namespace"] == "AWS/SQS" and alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {
            "Fn::GetAtt": [synth.logical_id(queue, "AWS::SQS::Queue"), "QueueName"]}}]
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_function_error_alarms(synth):
    for function_id in ("ApiFunction", "ProcessStreamFunction", "InvokeModelFunction", "StorePredictionsFunction",
                        "RecordCostFunction", "RetrainBatchSizeFunction", "MonitorDriftFunction"):
        alarm = _alarm(synth, f"AlarmErrors{function_id.removesuffix('Function')}")
        assert alarm["MetricName"] == "Errors" and alarm["Statistic"] == "Sum"
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {
            "Ref": synth.logical_id(function_id, "AWS::Lambda::Function")}}]
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_state_machine_model_cost_and_drift_alarms(synth):
    cfg = synth.config
    failed = _alarm(synth, "AlarmStateMachineFailed")
    assert (failed["Namespace"], failed["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    # a timed-out Express execution runs no Catch (nothing stored, nothing quarantined): its own alarm
    timed_out = _alarm(synth, "AlarmStateMachineTimedOut")
    assert (timed_out["Namespace"], timed_out["MetricName"], timed_out["Statistic"]) == (
        "AWS/States", "ExecutionsTimedOut", "Sum")
    assert timed_out["Dimensions"] == [{"Name": "StateMachineArn", "Value": {
        "Ref": synth.logical_id("InferenceStateMachine", "AWS::StepFunctions::StateMachine")}}]
    assert (timed_out["Threshold"], timed_out["ComparisonOperator"]) == (
        cfg.alarms.state_machine_timeouts, "GreaterThanOrEqualToThreshold") == (1, "GreaterThanOrEqualToThreshold")
    assert timed_out["AlarmActions"] == failed["AlarmActions"]       # the same SNS topic
    for variant in cfg.variants:
        latency = _alarm(synth, f"AlarmModelLatency{variant.name.capitalize()}")
        assert (latency["Namespace"], latency["MetricName"], latency["ExtendedStatistic"]) == (
            "AWS/SageMaker", "ModelLatency", "p90")
        # serverless mode: each variant's own endpoint (Endpoint, EndpointChallenger)
        endpoint = "Endpoint" if variant == cfg.variants[0] else f"Endpoint{variant.name.capitalize()}"
        assert {"Name": "EndpointName", "Value": {"Fn::GetAtt": [endpoint, "EndpointName"]}} in latency["Dimensions"]
        assert {"Name": "VariantName", "Value": variant.name} in latency["Dimensions"]
        assert latency["Threshold"] == cfg.alarms.model_latency_ms * 1000   # ModelLatency is in microseconds
    for prefix, metric, threshold in (("AlarmCostPerThousandEvents", "CostPerThousandEvents",
                                       cfg.alarms.cost_per_thousand_events_usd),
                                      ("AlarmFeatureDrift", "FeatureDriftMaxPSI", cfg.alarms.drift_psi)):
        alarm = _alarm(synth, prefix)
        assert (alarm["Namespace"], alarm["MetricName"]) == (cfg.metrics_namespace, metric)
        # Powertools Metrics adds the service dimension (POWERTOOLS_SERVICE_NAME)
        assert alarm["Dimensions"] == [{"Name": "service", "Value": cfg.service_name}]
        assert alarm["Threshold"] == threshold


def test_dashboard_widgets(synth):
    [dashboard] = synth.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for needle in ("IncomingRecords", "IteratorAge", "Errors", "Duration", "ExecutionsFailed", "ExecutionsTimedOut",
                   "ModelLatency",
                   "ApproximateNumberOfMessagesVisible", "EventsProcessed", "CostPerThousandEvents", "BatchSize",
                   "FeatureDriftMaxPSI", "TunableCostPerThousandEvents", "ConfiguredBatchSize", "BatchEvents",
                   "BatchLatencyMax", synth.config.metrics_namespace):
        assert needle in body, needle
