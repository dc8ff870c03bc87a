"""RealtimeInferenceStack: the whole serverless real-time inference pipeline in one stack.

HTTP API (IAM auth) -> ApiFunction -> Kinesis EventsStream -> event source mapping -> ProcessStreamFunction
-> DynamoDB (ledger, features) -> Express state machine (InvokeModel -> StorePredictions -> RecordCost, Catch ->
QuarantineQueue) -> SageMaker serverless endpoint (XGBoost built-in container). EventBridge schedules run the
batch-size optimizer and the drift monitor (container-image functions). CloudWatch dashboard and alarms.

Construct ids at the stack's top level give the logical-id prefixes of docs/wiring.md. No resource has a fixed
physical name, so several copies of the stack can live in one account. cdk-nag acknowledgements: infra/nag.py.
"""
from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import (
    Aws,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Stack,
    aws_ecr_assets as ecr_assets,
    aws_events as events,
    aws_events_targets as targets,
    aws_iam as iam,
    aws_lambda as lambda_,
    aws_lambda_event_sources as event_sources,
    aws_logs as logs,
    aws_ssm as ssm,
    aws_stepfunctions as sfn,
)
from constructs import Construct

from pipeline import contract

from . import nag, runtime
from .config import Config, ConfigError
from .grants import Granted, grant_all
from .http_api import build_http_api
from .images import REGISTRIES, REPOSITORIES, XGBOOST_REGISTRIES, XGBOOST_REPOSITORY, region_problem  # noqa: F401
from .model_endpoint import ModelEndpoints
from .monitoring import Watched, build_monitoring
from .storage import build_storage

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
STATE_MACHINE_FILE = ROOT / "statemachines" / "inference.asl.json"

POWERTOOLS_ACCOUNT = runtime.POWERTOOLS_ACCOUNT   # publisher of the public Powertools for AWS Lambda (Python) layers
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12     # Amazon Linux 2023; infra/runtime.py pins it with the image and layer
assert LAMBDA_RUNTIME.name == runtime.LAMBDA_RUNTIME, (LAMBDA_RUNTIME.name, runtime.LAMBDA_RUNTIME)

# Zip functions: (construct id, handler). The ML functions run from the container image (functions/Dockerfile).
ZIP_FUNCTIONS = (
    ("ApiFunction", "api.handler.handler"),
    ("ProcessStreamFunction", "process_stream.handler.handler"),
    ("InvokeModelFunction", "invoke_model.handler.handler"),
    ("StorePredictionsFunction", "store_predictions.handler.handler"),
    ("RecordCostFunction", "record_cost.handler.handler"),
)
IMAGE_FUNCTIONS = (
    ("RetrainBatchSizeFunction", "retrain_batch_size.handler.handler"),
    ("MonitorDriftFunction", "monitor_drift.handler.handler"),
)
# Not shipped in the zip package: the image build files, the ML handlers (they need numpy/scikit-learn/xgboost,
# which only the image has), bytecode and tests.
ZIP_EXCLUDE = ["Dockerfile", "requirements-ml.txt", "retrain_batch_size", "monitor_drift", "**/__pycache__",
               "*.pyc", "tests", ".pytest_cache"]
IMAGE_EXCLUDE = ["**/__pycache__", "*.pyc", "tests", ".pytest_cache"]

ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId", "requestTime": "$context.requestTime", "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.userArn", "httpMethod": "$context.httpMethod", "routeKey": "$context.routeKey",
    "path": "$context.path", "status": "$context.status", "protocol": "$context.protocol",
    "responseLength": "$context.responseLength", "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integration.latency", "integrationError": "$context.integrationErrorMessage",
}


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

    # -- Lambda -------------------------------------------------------------------------------------------------
    def _functions(self) -> None:
        cfg = self.config
        # The public Powertools layer of the pinned release (infra/runtime.py): by default its ARN is read at deploy
        # time from Powertools' public SSM parameter for that release, in the stack's region.
        release = runtime.powertools_release()
        if cfg.powertools_layer_version == runtime.POWERTOOLS_SSM:
            layer_arn = ssm.StringParameter.value_for_string_parameter(self, runtime.ssm_parameter(release))
        else:
            layer_arn = (f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{runtime.POWERTOOLS_ACCOUNT}:layer:"
                         f"{runtime.layer_name()}:{cfg.powertools_layer_version}")
        self.powertools_layer = lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", layer_arn)
        self.zip_code = lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=ZIP_EXCLUDE)
        self.model_variants_json = self.to_json_string([
            {"name": v.name, "weight": v.weight, "kind": v.kind, "model_version": cfg.version_of(v),
             "endpoint": self.variant_endpoint_names[v.name]} for v in cfg.variants])
        self.base_environment = {
            "EVENTS_STREAM_NAME": self.stream.stream_name,
            **{spec.env: self.tables[construct_id].table_name for construct_id, spec in contract.TABLES.items()},
            "SAGEMAKER_ENDPOINT_NAME": self.endpoint_name,
            "ARTIFACTS_BUCKET": self.artifacts_bucket.bucket_name,
            "MODEL_DATA_URL": self.model_asset.s3_object_url,
            "QUARANTINE_QUEUE_URL": self.quarantine_queue.queue_url,
            "STREAM_DLQ_URL": self.stream_dlq.queue_url,
            "BATCH_SIZE": str(cfg.batch_size),
            "BATCHING_WINDOW_SECONDS": str(cfg.batching_window_seconds),
            "MIN_BATCH_SIZE": str(cfg.min_batch_size),
            "MAX_BATCH_SIZE": str(cfg.max_batch_size),
            "INVOKE_CHUNK_SIZE": str(cfg.invoke_chunk_size),
            "LATENCY_SLO_SECONDS": _number(cfg.latency_slo_seconds),
            "MODEL_VERSION": cfg.model_version,
            "FEATURE_SET": cfg.feature_set,
            # A/B: the variants and the endpoint serving each; invoke_model assigns each user to one, sticky, by a
            # hash of the user id and these weights (pipeline/variants.py), sends the user's rows to that variant's
            # endpoint (with TargetVariant when the endpoint hosts several: instance mode) and records the variant's
            # model version
            "MODEL_VARIANTS": self.model_variants_json,
            # what the cost model needs to price a batch (pipeline/costs.py Deployment)
            "COST_PROFILE": json.dumps({
                "shards": cfg.shard_count, "endpoint_mode": cfg.endpoint.mode,
                "endpoint_memory_mb": cfg.endpoint.serverless_memory_mb,
                "instance_type": cfg.endpoint.instance_type, "instance_count": cfg.endpoint.instance_count,
                "variants": len(cfg.variants), "table_capacity": cfg.table_capacity.mode,
                "table_target_utilization": cfg.table_capacity.target_utilization_percent / 100},
                separators=(",", ":")),
            "POWERTOOLS_SERVICE_NAME": cfg.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": cfg.metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": cfg.powertools_log_level,
            # X-Ray must not keep handler results: they hold per-user features and scores (issue 12)
            "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        }
        if set(self.base_environment) != contract.COMMON_ENV:  # the runtime reads what pipeline/contract.py names
            raise ConfigError(f"the functions' environment differs from pipeline/contract.py COMMON_ENV: "
                              f"{sorted(set(self.base_environment) ^ contract.COMMON_ENV)}")
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for function_id, handler in ZIP_FUNCTIONS:
            self.functions[function_id] = lambda_.Function(
                self, function_id, runtime=LAMBDA_RUNTIME, architecture=lambda_.Architecture.X86_64,
                handler=handler, code=self.zip_code, layers=[self.powertools_layer],
                **self._function_options(function_id, handler))
        for function_id, handler in IMAGE_FUNCTIONS:
            self.functions[function_id] = lambda_.DockerImageFunction(
                self, function_id, architecture=lambda_.Architecture.X86_64,
                code=lambda_.DockerImageCode.from_image_asset(
                    str(FUNCTIONS_DIR), file="Dockerfile", cmd=[handler], exclude=IMAGE_EXCLUDE,
                    platform=ecr_assets.Platform.LINUX_AMD64),
                **self._function_options(function_id, handler))

    def _function_options(self, function_id: str, handler: str) -> dict:
        short = function_id.removesuffix("Function")
        settings = self.config.function(function_id)
        role = iam.Role(self, f"{short}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"Execution role of {function_id} (least privilege, see infra/stack.py)")
        log_group = logs.LogGroup(self, f"{short}Logs", retention=self.retention, removal_policy=self.removal)
        log_group.grant_write(role)
        self.roles[function_id] = role
        self.log_groups[function_id] = log_group
        return dict(role=role, memory_size=settings.memory_mb, timeout=Duration.seconds(settings.timeout_seconds),
                    tracing=lambda_.Tracing.ACTIVE, log_group=log_group, environment=dict(self.base_environment),
                    description=f"{function_id}: {handler}")

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


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
