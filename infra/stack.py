"""RealtimeInferenceStack: the whole serverless real-time inference pipeline in one stack.

HTTP API (IAM auth) -> ApiFunction -> Kinesis EventsStream -> event source mapping -> ProcessStreamFunction
-> DynamoDB (ledger, features) -> Express state machine (InvokeModel -> StorePredictions -> RecordCost, Catch ->
QuarantineQueue) -> SageMaker serverless endpoint (XGBoost built-in container). EventBridge schedules run the
batch-size optimizer and the drift monitor (container-image functions). CloudWatch dashboard and alarms.

This class is the composition root: each concern is built by its own module from explicit inputs, in the order of
the data flow (storage.py, model_endpoint.py, functions.py, then the state machine and the stream mapping here,
grants.py, the schedules, http_api.py, monitoring.py), into this stack's scope, so construct ids at the stack's top
level give the logical-id prefixes of docs/wiring.md (tests/infra/test_template_snapshot.py holds the template to
a reviewed snapshot). No resource has a fixed physical name, so several copies of the stack can live in one account.
cdk-nag acknowledgements: infra/nag.py.
"""
from __future__ import annotations

from pathlib import Path

from aws_cdk import (
    Aws,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
    aws_events as events,
    aws_events_targets as targets,
    aws_iam as iam,
    aws_lambda as lambda_,
    aws_lambda_event_sources as event_sources,
    aws_logs as logs,
    aws_stepfunctions as sfn,
)
from constructs import Construct

from . import nag
from .config import Config, ConfigError
from .functions import Wired, build_functions
from .grants import Granted, grant_all
from .http_api import build_http_api
from .model_endpoint import ModelEndpoints
from .monitoring import Watched, build_monitoring
from .storage import build_storage

STATE_MACHINE_FILE = Path(__file__).resolve().parent.parent / "statemachines" / "inference.asl.json"


def _retention(days: int) -> logs.RetentionDays:
    for member in logs.RetentionDays:
        if _RETENTION_DAYS.get(member.name) == days:
            return member
    raise ConfigError(f"logRetentionDays: {days} is not a CloudWatch Logs retention period")


_RETENTION_DAYS = {
    "ONE_DAY": 1, "THREE_DAYS": 3, "FIVE_DAYS": 5, "ONE_WEEK": 7, "TWO_WEEKS": 14, "ONE_MONTH": 30,
    "TWO_MONTHS": 60, "THREE_MONTHS": 90, "FOUR_MONTHS": 120, "FIVE_MONTHS": 150, "SIX_MONTHS": 180,
    "ONE_YEAR": 365, "THIRTEEN_MONTHS": 400, "EIGHTEEN_MONTHS": 545, "TWO_YEARS": 731, "THREE_YEARS": 1096,
    "FIVE_YEARS": 1827, "SIX_YEARS": 2192, "SEVEN_YEARS": 2557, "EIGHT_YEARS": 2922, "NINE_YEARS": 3288,
    "TEN_YEARS": 3653,
}


class RealtimeInferenceStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, acknowledge_nag: bool = True,
                 **kwargs) -> None:
        """``acknowledge_nag=False`` leaves out the cdk-nag acknowledgements (tests use it to see every finding)."""
        super().__init__(scope, construct_id, **kwargs)
        self.config = cfg = config
        self.removal = RemovalPolicy.DESTROY if cfg.removal_policy == "destroy" else RemovalPolicy.RETAIN
        self.retention = _retention(cfg.log_retention_days)

        self._data()
        self._model()
        self._functions()
        self._state_machine()
        self._stream_mapping()
        self._wire_environment()
        self._grants()
        self._schedules()
        self._http_api()
        self._monitoring()
        self._outputs()
        self.acknowledgements = nag.acknowledge_stack(self) if acknowledge_nag else []

    # -- storage and messaging (infra/storage.py) -------------------------------------------------------------
    def _data(self) -> None:
        storage = build_storage(self, self.config, self.removal)
        self.stream, self.tables, self.stream_dlq, self.quarantine_queue = (
            storage.stream, storage.tables, storage.stream_dlq, storage.quarantine_queue)
        self.access_logs_bucket, self.artifacts_bucket = storage.access_logs_bucket, storage.artifacts_bucket
        self.events_table, self.predictions_table, self.features_table, self.cost_table, self.state_table = (
            self.tables[t] for t in ("EventsTable", "PredictionsTable", "FeaturesTable", "CostTable", "StateTable"))

    # -- SageMaker (infra/model_endpoint.py) ---------------------------------------------------------------------
    def _model(self) -> None:
        sm = self.sagemaker = ModelEndpoints(self, self.config, self.artifacts_bucket)
        self.model_role, self.model_asset, self.endpoint_name = sm.model_role, sm.model_asset, sm.endpoint_name
        self.endpoint_arns, self.variant_endpoint_names = sm.endpoint_arns, sm.variant_endpoint_names

    # -- Lambda (infra/functions.py) ---------------------------------------------------------------------------
    def _functions(self) -> None:
        built = build_functions(self, self.config, Wired(
            stream=self.stream, tables=self.tables, artifacts_bucket=self.artifacts_bucket,
            quarantine_queue=self.quarantine_queue, stream_dlq=self.stream_dlq, endpoint_name=self.endpoint_name,
            model_asset=self.model_asset, variant_endpoint_names=self.variant_endpoint_names),
            self.retention, self.removal)
        self.functions, self.roles, self.log_groups = built.functions, built.roles, built.log_groups
        self.model_variants_json, self.base_environment = built.model_variants_json, built.environment

    # -- Step Functions -----------------------------------------------------------------------------------------
    def _state_machine(self) -> None:
        log_group = logs.LogGroup(
            self, "InferenceLogs",
            # Express workflows log through CloudWatch Logs vended delivery: the /aws/vendedlogs/ prefix keeps the
            # log group's resource policy small. The stack name keeps the name unique per stack.
            log_group_name=f"/aws/vendedlogs/states/{Aws.STACK_NAME}-inference",
            retention=self.retention, removal_policy=self.removal)
        self.state_machine_log_group = log_group
        self.state_machine = sfn.StateMachine(
            self, "InferenceStateMachine",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_string(STATE_MACHINE_FILE.read_text()),
            definition_substitutions={
                "InvokeModelFunctionArn": self.functions["InvokeModelFunction"].function_arn,
                "StorePredictionsFunctionArn": self.functions["StorePredictionsFunction"].function_arn,
                "RecordCostFunctionArn": self.functions["RecordCostFunction"].function_arn,
                "QuarantineQueueUrl": self.quarantine_queue.queue_url,
            },
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ERROR, include_execution_data=False),
            tracing_enabled=True)
        self.state_machine.add_to_role_policy(iam.PolicyStatement(
            sid="InvokeTaskFunctions", actions=["lambda:InvokeFunction"],
            resources=[self.functions[f].function_arn
                       for f in ("InvokeModelFunction", "StorePredictionsFunction", "RecordCostFunction")]))
        self.state_machine.add_to_role_policy(iam.PolicyStatement(
            sid="QuarantineFailedBatches", actions=["sqs:SendMessage"], resources=[self.quarantine_queue.queue_arn]))

    # -- Kinesis -> process_stream ------------------------------------------------------------------------------
    def _stream_mapping(self) -> None:
        cfg = self.config
        process = self.functions["ProcessStreamFunction"]
        self.stream.grant_read(process)
        self.stream_mapping = lambda_.EventSourceMapping(
            self, "EventsStreamMapping", target=process, event_source_arn=self.stream.stream_arn,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=cfg.batch_size,
            max_batching_window=Duration.seconds(cfg.batching_window_seconds),
            bisect_batch_on_error=True,
            report_batch_item_failures=True,
            max_record_age=None if cfg.max_record_age_seconds < 0 else Duration.seconds(cfg.max_record_age_seconds),
            retry_attempts=None if cfg.max_retry_attempts < 0 else cfg.max_retry_attempts,
            on_failure=event_sources.SqsDlq(self.stream_dlq))
        # The mapping validates its stream permissions on creation: create it after the role's policy.
        self.stream_mapping.node.add_dependency(self.roles["ProcessStreamFunction"])

    def _wire_environment(self) -> None:
        """Values that would form dependency cycles stay off some functions (docs/wiring.md, environment table):
        the three state-machine task functions get neither STATE_MACHINE_ARN nor EVENT_SOURCE_MAPPING_ID (the
        state machine references them), and ProcessStreamFunction does not get its own mapping's id."""
        for function_id in ("ApiFunction", "ProcessStreamFunction", "RetrainBatchSizeFunction",
                            "MonitorDriftFunction"):
            self.functions[function_id].add_environment("STATE_MACHINE_ARN", self.state_machine.state_machine_arn)
        for function_id in ("ApiFunction", "RetrainBatchSizeFunction", "MonitorDriftFunction"):
            self.functions[function_id].add_environment("EVENT_SOURCE_MAPPING_ID",
                                                        self.stream_mapping.event_source_mapping_id)

    # -- IAM: least privilege, per function (infra/grants.py) ---------------------------------------------------
    def _grants(self) -> None:
        grant_all(Granted(
            functions=self.functions, tables=self.tables, bucket=self.artifacts_bucket, stream=self.stream,
            queues=[self.stream_dlq, self.quarantine_queue], state_machine=self.state_machine,
            stream_mapping=self.stream_mapping, endpoint_arns=self.endpoint_arns, model_asset=self.model_asset,
            metrics_namespace=self.config.metrics_namespace))

    # -- EventBridge schedules ----------------------------------------------------------------------------------
    def _schedules(self) -> None:
        cfg = self.config
        for rule_id, function_id, expression, what in (
                ("RetrainBatchSizeSchedule", "RetrainBatchSizeFunction", cfg.retrain_schedule,
                 "retrain the batch-size optimizer on the cost records and apply its choice"),
                ("MonitorDriftSchedule", "MonitorDriftFunction", cfg.drift_schedule,
                 "compare recent features with the model's training baseline")):
            events.Rule(self, rule_id, description=f"{expression}: {what}",
                        schedule=events.Schedule.expression(expression),
                        targets=[targets.LambdaFunction(self.functions[function_id], retry_attempts=2,
                                                        max_event_age=Duration.hours(1))])

    # -- HTTP API (infra/http_api.py) ---------------------------------------------------------------------------
    def _http_api(self) -> None:
        api = build_http_api(self, self.config, self.functions["ApiFunction"], self.retention, self.removal)
        self.http_api, self.default_route, self.api_access_logs, self.api_stage = (
            api.http_api, api.default_route, api.access_logs, api.stage)

    # -- CloudWatch ---------------------------------------------------------------------------------------------
    def _monitoring(self) -> None:
        monitoring = build_monitoring(self, self.config, Watched(
            functions=self.functions, stream=self.stream, stream_dlq=self.stream_dlq,
            quarantine_queue=self.quarantine_queue, state_machine=self.state_machine,
            variant_endpoint_names=self.variant_endpoint_names))
        self.alarm_topic, self.alarms, self.dashboard = monitoring.alarm_topic, monitoring.alarms, monitoring.dashboard

    # -- outputs ------------------------------------------------------------------------------------------------
    def _outputs(self) -> None:
        outputs = {
            "ApiUrl": (self.api_stage.url, "HTTP API base URL (IAM/SigV4 auth)"),
            "EventsStreamName": (self.stream.stream_name, "Kinesis stream (partition key: user_id)"),
            "EndpointName": (self.endpoint_name, "SageMaker endpoint of the first variant"),
            "ModelVariants": (self.model_variants_json, "A/B variants: name, weight, kind, model version and the "
                                                        "endpoint serving each (= MODEL_VARIANTS; scripts/promote.py)"),
            "StateMachineArn": (self.state_machine.state_machine_arn, "Inference state machine (Express)"),
            "EventSourceMappingId": (self.stream_mapping.event_source_mapping_id,
                                     "Kinesis -> ProcessStreamFunction mapping"),
            "ArtifactsBucketName": (self.artifacts_bucket.bucket_name, "Artifacts bucket"),
            "StreamDlqUrl": (self.stream_dlq.queue_url, "Kinesis on-failure destination"),
            "QuarantineQueueUrl": (self.quarantine_queue.queue_url, "Failed inference batches"),
            "AlarmTopicArn": (self.alarm_topic.topic_arn, "Alarm notifications"),
            "DashboardName": (self.dashboard.dashboard_name, "CloudWatch dashboard"),
        }
        for table_id, table in self.tables.items():
            outputs[f"{table_id}Name"] = (table.table_name, f"DynamoDB {table_id}")
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)

