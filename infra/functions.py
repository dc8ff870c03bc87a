"""The Lambda functions: the registry (construct id, handler, packaging), the environment every function gets
(names from pipeline/contract.py), and one execution role and log group per function. Built from explicit inputs
into the stack's scope (logical ids unchanged); the roles get their grants in infra/grants.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import (
    Aws,
    Duration,
    RemovalPolicy,
    Stack,
    aws_dynamodb as dynamodb,
    aws_ecr_assets as ecr_assets,
    aws_iam as iam,
    aws_kinesis as kinesis,
    aws_lambda as lambda_,
    aws_logs as logs,
    aws_s3 as s3,
    aws_s3_assets as s3_assets,
    aws_sqs as sqs,
    aws_ssm as ssm,
)

from pipeline import contract

from . import runtime
from .config import Config, ConfigError

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"
''' + "" + '''

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


@dataclass
class Wired:
    """What the functions' environment names."""
    stream: kinesis.Stream
    tables: dict[str, dynamodb.Table]
    artifacts_bucket: s3.Bucket
    quarantine_queue: sqs.Queue
    stream_dlq: sqs.Queue
    endpoint_name: str
    model_asset: s3_assets.Asset
    variant_endpoint_names: dict[str, str]


@dataclass
class Functions:
    powertools_layer: lambda_.ILayerVersion
    model_variants_json: str
    environment: dict[str, str]
    functions: dict[str, lambda_.Function] = field(default_factory=dict)
    roles: dict[str, iam.Role] = field(default_factory=dict)
    log_groups: dict[str, logs.LogGroup] = field(default_factory=dict)


def build_functions(scope: Stack, cfg: Config, wired: Wired, retention: logs.RetentionDays,
                    removal: RemovalPolicy) -> Functions:
    variants_json = scope.to_json_string([
        {"name": v.name, "weight": v.weight, "kind": v.kind, "model_version": cfg.version_of(v),
         "endpoint": wired.variant_endpoint_names[v.name]} for v in cfg.variants])
    built = Functions(powertools_layer=_powertools_layer(scope, cfg), model_variants_json=variants_json,
                      environment=environment(cfg, wired, variants_json))
    zip_code = lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=ZIP_EXCLUDE)
    for function_id, handler in ZIP_FUNCTIONS:
        built.functions[function_id] = lambda_.Function(
            scope, function_id, runtime=LAMBDA_RUNTIME, architecture=lambda_.Architecture.X86_64,
            handler=handler, code=zip_code, layers=[built.powertools_layer],
            **_options(scope, cfg, built, function_id, handler, retention, removal))
    for function_id, handler in IMAGE_FUNCTIONS:
        built.functions[function_id] = lambda_.DockerImageFunction(
            scope, function_id, architecture=lambda_.Architecture.X86_64,
            code=lambda_.DockerImageCode.from_image_asset(
                str(FUNCTIONS_DIR), file="Dockerfile", cmd=[handler], exclude=IMAGE_EXCLUDE,
                platform=ecr_assets.Platform.LINUX_AMD64),
            **_options(scope, cfg, built, function_id, handler, retention, removal))
    return built


def _powertools_layer(scope: Stack, cfg: Config) -> lambda_.ILayerVersion:
    """The public Powertools layer of the pinned release (infra/runtime.py): by default its ARN is read at deploy
    time from Powertools' public SSM parameter for that release, in the stack's region."""
    release = runtime.powertools_release()
    if cfg.powertools_layer_version == runtime.POWERTOOLS_SSM:
        layer_arn = ssm.StringParameter.value_for_string_parameter(scope, runtime.ssm_parameter(release))
    else:
        layer_arn = (f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{runtime.POWERTOOLS_ACCOUNT}:layer:"
                     f"{runtime.layer_name()}:{cfg.powertools_layer_version}")
    return lambda_.LayerVersion.from_layer_version_arn(scope, "PowertoolsLayer", layer_arn)


def environment(cfg: Config, wired: Wired, variants_json: str) -> dict[str, str]:
    """What every function gets (pipeline/contract.py COMMON_ENV; refused at synth if they differ)."""
    env = {
        "EVENTS_STREAM_NAME": wired.stream.stream_name,
        **{spec.env: wired.tables[construct_id].table_name for construct_id, spec in contract.TABLES.items()},
        "SAGEMAKER_ENDPOINT_NAME": wired.endpoint_name,
        "ARTIFACTS_BUCKET": wired.artifacts_bucket.bucket_name,
        "MODEL_DATA_URL": wired.model_asset.s3_object_url,
        "QUARANTINE_QUEUE_URL": wired.quarantine_queue.queue_url,
        "STREAM_DLQ_URL": wired.stream_dlq.queue_url,
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
        "MODEL_VARIANTS": variants_json,
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
    if set(env) != contract.COMMON_ENV:  # the runtime reads what pipeline/contract.py names
        raise ConfigError(f"the functions' environment differs from pipeline/contract.py COMMON_ENV: "
                          f"{sorted(set(env) ^ contract.COMMON_ENV)}")
    return env


def _options(scope: Stack, cfg: Config, built: Functions, function_id: str, handler: str,
             retention: logs.RetentionDays, removal: RemovalPolicy) -> dict:
    """A function's own role and log group, its memory and timeout (cdk.json ``functions``), and the environment."""
    short = function_id.removesuffix("Function")
    settings = cfg.function(function_id)
    role = iam.Role(scope, f"{short}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                    description=f"Execution role of {function_id} (least privilege, see infra/stack.py)")
    log_group = logs.LogGroup(scope, f"{short}Logs", retention=retention, removal_policy=removal)
    log_group.grant_write(role)
    built.roles[function_id] = role
    built.log_groups[function_id] = log_group
    return dict(role=role, memory_size=settings.memory_mb, timeout=Duration.seconds(settings.timeout_seconds),
                tracing=lambda_.Tracing.ACTIVE, log_group=log_group, environment=dict(built.environment),
                description=f"{function_id}: {handler}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
