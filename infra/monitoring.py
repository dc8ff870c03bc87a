"""The stack's monitoring: the alarm topic (KMS-encrypted SNS), the alarms and the CloudWatch dashboard.

Built from explicit inputs (what it watches) into the stack's scope, so the logical ids are the construct ids here.
"""
from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import (
    Duration,
    RemovalPolicy,
    aws_cloudwatch as cw,
    aws_cloudwatch_actions as cw_actions,
    aws_iam as iam,
    aws_kinesis as kinesis,
    aws_kms as kms,
    aws_lambda as lambda_,
    aws_sns as sns,
    aws_sns_subscriptions as subscriptions,
    aws_sqs as sqs,
    aws_stepfunctions as sfn,
)
from constructs import Construct

from .config import Config
from .ids import pascal


@dataclass
class Watched:
    """What the alarms and the dashboard watch."""
    functions: dict[str, lambda_.Function]
    stream: kinesis.Stream
    stream_dlq: sqs.Queue
    quarantine_queue: sqs.Queue
    state_machine: sfn.StateMachine
    variant_endpoint_names: dict[str, str]


@dataclass
class Monitoring:
    alarm_topic: sns.Topic
    dashboard: cw.Dashboard
    alarms: dict[str, cw.Alarm]


class _Alarms:
    """Alarms notifying one topic, all with the configured period, evaluation periods and missing-data rule."""

    def __init__(self, scope: Construct, cfg: Config, topic: sns.Topic):
        self.scope, self.cfg = scope, cfg
        self.created: dict[str, cw.Alarm] = {}
        self.period = Duration.seconds(cfg.alarms.period_seconds)
        self.action = cw_actions.SnsAction(topic)

    def add(self, construct_id: str, metric: cw.IMetric, threshold: float, description: str,
            comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD) -> cw.Alarm:
        created = cw.Alarm(self.scope, construct_id, metric=metric, threshold=threshold, comparison_operator=comparison,
                           evaluation_periods=self.cfg.alarms.evaluation_periods, alarm_description=description,
                           treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        created.add_alarm_action(self.action)
        created.add_ok_action(self.action)
        self.created[construct_id] = created
        return created

    def custom(self, name: str, statistic: str) -> cw.Metric:
        """One of the pipeline's own EMF metrics (Powertools Metrics, dimension ``service``)."""
        return cw.Metric(namespace=self.cfg.metrics_namespace, metric_name=name, statistic=statistic,
                         period=self.period, dimensions_map={"service": self.cfg.service_name})


def build_monitoring(scope: Construct, cfg: Config, watched: Watched) -> Monitoring:
    topic = _alarm_topic(scope, cfg)
    alarms = _Alarms(scope, cfg, topic)
    metrics = _pipeline_alarms(alarms, cfg, watched)
    metrics["latency"] = _model_latency_alarms(alarms, cfg, watched)
    return Monitoring(alarm_topic=topic, dashboard=_dashboard(scope, alarms, watched, metrics), alarms=alarms.created)


def _alarm_topic(scope: Construct, cfg: Config) -> sns.Topic:
    key = kms.Key(scope, "AlarmTopicKey", enable_key_rotation=True,
                  # protects only notifications in flight: scheduled for deletion with the stack
                  removal_policy=RemovalPolicy.DESTROY, pending_window=Duration.days(7),
                  description="Encrypts the alarm notification topic (CloudWatch may use it to publish)")
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="CloudWatchAlarmsPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"]))
    topic = sns.Topic(scope, "AlarmTopic", master_key=key, enforce_ssl=True, display_name="Real-time inference alarms")
    if cfg.alarm_email:
        topic.add_subscription(subscriptions.EmailSubscription(cfg.alarm_email))
    return topic


def _pipeline_alarms(alarms: _Alarms, cfg: Config, w: Watched) -> dict:
    """The stream, queue, function, state machine, cost and drift alarms; returns the metrics the dashboard shows."""
    a, period = cfg.alarms, alarms.period
    m: dict = {"iterator_age": w.functions["ProcessStreamFunction"].metric("IteratorAge", statistic="Maximum",
                                                                          period=period)}
    alarms.add("AlarmIteratorAge", m["iterator_age"], a.iterator_age_seconds * 1000,
               f"The stream consumer is more than {a.iterator_age_seconds} s behind (ProcessStreamFunction "
               "IteratorAge): raise shardCount or the batch size")
    m["dlq_depth"] = w.stream_dlq.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum")
    alarms.add("AlarmStreamDlqDepth", m["dlq_depth"], a.dlq_messages,
               "Kinesis records the stream consumer gave up on (age/retries exhausted) are in StreamDlq")
    m["quarantine_depth"] = w.quarantine_queue.metric_approximate_number_of_messages_visible(
        period=period, statistic="Maximum")
    alarms.add("AlarmQuarantineDepth", m["quarantine_depth"], a.quarantine_messages,
               "Batches the inference state machine could not score or store are in QuarantineQueue")
    at_least = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
    for function_id, function in w.functions.items():
        alarms.add(f"AlarmErrors{function_id.removesuffix('Function')}",
                   function.metric_errors(period=period, statistic="Sum"), a.function_errors,
                   f"{function_id} reported errors", at_least)
    alarms.add("AlarmStateMachineFailed", w.state_machine.metric_failed(period=period, statistic="Sum"),
               a.state_machine_failures, "Inference executions failed (their batches are in QuarantineQueue)",
               at_least)
    # A timed-out Express execution (5 minutes) runs no Catch: its batch is neither stored nor quarantined, so
    # ExecutionsFailed does not see it. The ASL's TimeoutSeconds and retries keep the worst case under 5 minutes
    # (tests/infra/test_deploy_readiness.py); this alarm is the safety net if that ever stops holding.
    alarms.add("AlarmStateMachineTimedOut", w.state_machine.metric_timed_out(period=period, statistic="Sum"),
               a.state_machine_timeouts, "Inference executions timed out (5-minute Express limit): their batches "
               "were neither stored nor quarantined; replay them from the ledger (EventsTable)", at_least)
    m["cost"] = alarms.custom("CostPerThousandEvents", "Average")
    alarms.add("AlarmCostPerThousandEvents", m["cost"], a.cost_per_thousand_events_usd,
               f"Pipeline cost per 1,000 events above {a.cost_per_thousand_events_usd} USD (RecordCostFunction)")
    m["drift"] = alarms.custom("FeatureDriftMaxPSI", "Maximum")
    alarms.add("AlarmFeatureDrift", m["drift"], a.drift_psi,
               f"Feature drift: the largest PSI against the training baseline is above {a.drift_psi}")
    return m


def _model_latency_alarms(alarms: _Alarms, cfg: Config, w: Watched) -> list[cw.IMetric]:
    """One SageMaker ModelLatency p90 alarm per A/B variant; returns the labelled metrics for the dashboard."""
    shown = []
    for variant in cfg.variants:
        latency = cw.Metric(namespace="AWS/SageMaker", metric_name="ModelLatency", statistic="p90",
                            period=alarms.period, dimensions_map={
                                "EndpointName": w.variant_endpoint_names[variant.name], "VariantName": variant.name})
        shown.append(latency.with_(label=f"{variant.name} p90 (µs)"))
        alarms.add(f"AlarmModelLatency{pascal(variant.name)}", latency, cfg.alarms.model_latency_ms * 1000,
                   f"SageMaker ModelLatency p90 of variant {variant.name} above {cfg.alarms.model_latency_ms} ms")
    return shown


def _dashboard(scope: Construct, alarms: _Alarms, w: Watched, m: dict) -> cw.Dashboard:
    period, custom = alarms.period, alarms.custom
    ingest = w.stream.metric_incoming_records(period=period, statistic="Sum")
    stream_age = w.stream.metric_get_records_iterator_age_milliseconds(period=period, statistic="Maximum")
    dashboard = cw.Dashboard(scope, "Dashboard", default_interval=Duration.hours(3))

    def graph(title: str, left: list, right: list | None = None, width: int = 8) -> cw.GraphWidget:
        return cw.GraphWidget(title=title, left=left, right=right or [], width=width, height=6)

    functions = list(w.functions.items())
    dashboard.add_widgets(
        graph("Ingest: records into Kinesis", [ingest]),
        graph("Iterator age (ms)", [m["iterator_age"], stream_age]),
        graph("Events processed / batch size", [custom("EventsProcessed", "Sum")], [custom("BatchSize", "Average")]),
    )
    dashboard.add_widgets(
        graph("Lambda errors", [fn.metric_errors(period=period, statistic="Sum", label=fid)
                                for fid, fn in functions], width=12),
        graph("Lambda duration p90 (ms)", [fn.metric_duration(period=period, statistic="p90", label=fid)
                                           for fid, fn in functions], width=12),
    )
    dashboard.add_widgets(
        graph("State machine executions", [
            w.state_machine.metric_succeeded(period=period, statistic="Sum"),
            w.state_machine.metric_failed(period=period, statistic="Sum"),
            w.state_machine.metric_timed_out(period=period, statistic="Sum")]),
        graph("Model latency (SageMaker, µs)", m["latency"]),
        graph("DLQ / quarantine depth", [m["dlq_depth"], m["quarantine_depth"]]),
    )
    dashboard.add_widgets(
        graph("Cost per 1,000 events (USD): all lines / tunable by the batch size", [m["cost"]],
              [custom("TunableCostPerThousandEvents", "Average")], width=6),
        graph("Batch: configured BatchSize / events / latency (s)",
              [custom("ConfiguredBatchSize", "Average"), custom("BatchEvents", "Average")],
              [custom("BatchLatencyMax", "p99")], width=6),
        graph("Feature drift (max PSI)", [m["drift"]], width=12),
    )
    return dashboard

