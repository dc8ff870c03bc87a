"""Typed, validated settings of the stack, read from the CDK context (cdk.json, overridable with `cdk -c key=value`).

Every tunable of the deployment lives in cdk.json's "context"; this module turns it into frozen dataclasses and
reports every bad value at once with a clear message (``ConfigError``). Values given on the CDK CLI with
``-c key=value`` arrive as strings: numbers, booleans and JSON objects/lists are accepted in that form too.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)
# SageMaker limits the endpoint settings are checked against (each one a deploy or invocation failure on AWS that the
# local cloud would accept):
# - Serverless Inference: memory 1024-6144 MB in 1 GB steps, MaxConcurrency 1-200 (SageMaker API Reference,
#   ProductionVariantServerlessConfig, https://docs.aws.amazon.com/sagemaker/latest/APIReference/
#   API_ProductionVariantServerlessConfig.html); no multiple production variants and no data capture / Model Monitor
#   (SageMaker Developer Guide, "Deploy models with Amazon SageMaker Serverless Inference", feature exclusions,
#   https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html): the stack gives each A/B variant its
#   own serverless endpoint; request and response payloads at most 4 MB ("Invoke a serverless endpoint",
#   https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html).
# - Real-time (instance) endpoints: at most 10 production variants per endpoint configuration (API Reference,
#   CreateEndpointConfig, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpointConfig.html);
#   InvokeEndpoint bodies at most 6 MB (API Reference, InvokeEndpoint, https://docs.aws.amazon.com/sagemaker/latest/
#   APIReference/API_runtime_InvokeEndpoint.html).
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = (1, 200)
SERVERLESS_PAYLOAD_BYTES = 4 * 1024 * 1024
REALTIME_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_PRODUCTION_VARIANTS = 10
# DynamoDB provisioned-capacity quotas (default, per Region): at most 40,000 RCU and 40,000 WCU for one table or one
# of its GSIs, 80,000 for the sum over the account's tables and GSIs, at least 1 for any table or GSI
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html).
DDB_TABLE_CAPACITY_QUOTA = 40_000
DDB_ACCOUNT_CAPACITY_QUOTA = 80_000
DDB_AUTOSCALED_TARGETS = 6          # five tables and the predictions table's by_user index (infra/stack.py _data)
# A feature value in the text/csv body (pipeline/model_client.to_csv: repr(float), at most 24 characters for a
# float64, e.g. -1.2345678901234567e-300) plus its separator.
CSV_BYTES_PER_FEATURE = 25
FUNCTION_IDS = ("ApiFunction", "ProcessStreamFunction", "InvokeModelFunction", "StorePredictionsFunction",
                "RecordCostFunction", "RetrainBatchSizeFunction", "MonitorDriftFunction")

_SCHEDULE_RE = re.compile(r"^(rate\(\s*\d+\s+(minute|minutes|hour|hours|day|days)\s*\)|cron\(.+\))$")
_VARIANT_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_IMAGE_TAG_RE = re.compile(r"^\d+\.\d+-\d+$")
_PYTORCH_TAG_RE = re.compile(r"^\d+\.\d+(\.\d+)?-cpu-py3\d+$")   # CPU, Python 3 images only
MODEL_KINDS = ("xgboost", "pytorch")
_INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_./#:-]{1,255}$")
_ARTIFACT_RE = re.compile(r"^.+\.tar\.gz$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """The CDK context holds missing or invalid settings (the message lists all of them)."""


# Defaults for the nested settings: a context object may give only the keys it changes.
DEFAULT_FUNCTIONS: dict[str, dict[str, int]] = {
    "ApiFunction": {"memoryMb": 512, "timeoutSeconds": 29},
    "ProcessStreamFunction": {"memoryMb": 1024, "timeoutSeconds": 120},
    # the three state-machine tasks: their timeouts are budgeted against the 5-minute Express limit
    # (statemachines/inference.asl.json TimeoutSeconds, tests/infra/test_deploy_readiness.py)
    "InvokeModelFunction": {"memoryMb": 512, "timeoutSeconds": 70},
    "StorePredictionsFunction": {"memoryMb": 512, "timeoutSeconds": 30},
    "RecordCostFunction": {"memoryMb": 256, "timeoutSeconds": 10},
    "RetrainBatchSizeFunction": {"memoryMb": 2048, "timeoutSeconds": 300},
    "MonitorDriftFunction": {"memoryMb": 1024, "timeoutSeconds": 300},
}


@dataclass(frozen=True)
class Variant:
    """One SageMaker production variant (A/B testing: several variants share traffic by weight; invoke_model
    assigns each user to one variant, sticky, by a hash of the user id and these weights)."""
    name: str
    weight: float
    model_artifact: str | None = None   # a different model.tar.gz for this variant; None = the kind's artifact
    kind: str = "xgboost"               # "xgboost" (built-in container) or "pytorch" (PyTorch inference container)
    model_version: str | None = None    # recorded with each prediction of this variant; None = modelVersion


@dataclass(frozen=True)
class EndpointSettings:
    """How the variants are hosted. serverless: one serverless endpoint per variant (Serverless Inference allows one
    production variant per endpoint); instance: one real-time endpoint whose production variants are the variants
    (invoke_model picks one with TargetVariant)."""
    mode: str                           # "serverless" or "instance"
    serverless_memory_mb: int
    serverless_max_concurrency: int     # per endpoint, so per variant in serverless mode
    instance_type: str
    instance_count: int                 # per production variant
    data_capture_percent: int = 0       # instance mode only: SageMaker data capture of requests and responses


@dataclass(frozen=True)
class TableCapacity:
    """DynamoDB capacity mode of every table. on_demand (default): billed per request, nothing when idle.
    provisioned: capacity per second, billed per hour, kept near ``target_utilization_percent`` of what is consumed by
    Application Auto Scaling between ``min_capacity`` and ``max_capacity`` (each table and GSI, reads and writes);
    cheaper for steady traffic (docs/cost.md, "All-in cost"), throttled on bursts faster than auto scaling reacts."""
    mode: str = "on_demand"             # or "provisioned"
    target_utilization_percent: int = 70
    min_capacity: int = 5
    max_capacity: int = 10_000

    @property
    def provisioned(self) -> bool:
        return self.mode == "provisioned"


@dataclass(frozen=True)
class AlarmSettings:
    iterator_age_seconds: int           # ProcessStreamFunction IteratorAge (max) above this
    dlq_messages: int                   # StreamDlq visible messages above this
    quarantine_messages: int            # QuarantineQueue visible messages above this
    function_errors: int                # Lambda Errors (sum per period) at or above this, per function
    state_machine_failures: int         # failed executions (sum per period) at or above this
    state_machine_timeouts: int         # timed-out executions (sum per period) at or above this: their batches are
                                        # neither stored nor quarantined (a timed-out Express execution runs no Catch)
    model_latency_ms: int               # SageMaker ModelLatency p90 above this, per variant
    cost_per_thousand_events_usd: float  # CostPerThousandEvents (average) above this
    drift_psi: float                    # FeatureDriftMaxPSI (max) above this
    period_seconds: int
    evaluation_periods: int


@dataclass(frozen=True)
class FunctionSettings:
    memory_mb: int
    timeout_seconds: int


@dataclass(frozen=True)
class ApiThrottle:
    rate_limit: int
    burst_limit: int
    # POST /predict scores synchronously on the endpoints the pipeline's InvokeModel uses (a serverless endpoint
    # serves at most its max concurrency at once): its own, lower limit keeps a burst of it from starving the pipeline
    predict_rate_limit: int = 10
    predict_burst_limit: int = 5


@dataclass(frozen=True)
class Config:
    stack_name: str
    shard_count: int
    batch_size: int
    batching_window_seconds: int
    min_batch_size: int
    max_batch_size: int
    invoke_chunk_size: int
    max_record_age_seconds: int
    max_retry_attempts: int
    latency_slo_seconds: float
    model_version: str
    feature_set: str
    model_artifact: str
    xgboost_image_tag: str
    endpoint: EndpointSettings
    variants: tuple[Variant, ...]
    retrain_schedule: str
    drift_schedule: str
    alarms: AlarmSettings
    alarm_email: str | None
    log_retention_days: int
    powertools_layer_version: int | str      # a verified layer version number, or "ssm" (infra/runtime.py)
    powertools_log_level: str
    service_name: str
    metrics_namespace: str
    functions: dict[str, FunctionSettings] = field(default_factory=dict)
    api_throttle: ApiThrottle = ApiThrottle(200, 400)
    table_capacity: TableCapacity = TableCapacity()
    removal_policy: str = "retain"
    model_kind: str = "xgboost"                                   # default kind of a variant
    pytorch_model_artifact: str = "model/artifacts/pytorch/model.tar.gz"
    pytorch_image_tag: str = "2.6.0-cpu-py312"
    region: str | None = None          # a concrete deployment region (checked at synth); None = environment-agnostic

    def artifact_of(self, variant: Variant) -> str:
        """The model.tar.gz a variant serves: its own, else the stack's artifact of its kind."""
        if variant.model_artifact:
            return variant.model_artifact
        return self.pytorch_model_artifact if variant.kind == "pytorch" else self.model_artifact

    def version_of(self, variant: Variant) -> str:
        return variant.model_version or self.model_version

    def image_tag(self, kind: str) -> str:
        return self.pytorch_image_tag if kind == "pytorch" else self.xgboost_image_tag

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> "Config":
        """Build from a context getter (``app.node.try_get_context``); raises ConfigError listing every problem."""
        reader = _Reader(get)
        r = reader
        endpoint_raw = r.mapping("endpoint", {})
        alarms_raw = r.mapping("alarms", {})
        functions_raw = r.mapping("functions", {})
        throttle_raw = r.mapping("apiThrottle", {})
        capacity_raw = r.mapping("tableCapacity", {})
        model_kind = r.choice("modelKind", MODEL_KINDS, cast=lambda v: str(v).lower(), default="xgboost")
        config = cls(
            stack_name=r.string("stackName", pattern=_STACK_NAME_RE, hint="letters, digits and hyphens, "
                                "starting with a letter"),
            shard_count=r.integer("shardCount", 1, 500),
            batch_size=r.integer("batchSize", 1, 10_000),
            batching_window_seconds=r.integer("batchingWindowSeconds", 0, 300),
            min_batch_size=r.integer("minBatchSize", 1, 10_000),
            max_batch_size=r.integer("maxBatchSize", 1, 10_000),
            invoke_chunk_size=r.integer("invokeChunkSize", 1, 10_000),
            max_record_age_seconds=r.integer("maxRecordAgeSeconds", 60, 604_800, allow=(-1,)),
            max_retry_attempts=r.integer("maxRetryAttempts", 0, 10_000, allow=(-1,)),
            latency_slo_seconds=r.number("latencySloSeconds", 0.01, 900),
            model_version=r.string("modelVersion", pattern=re.compile(r"^[A-Za-z0-9._-]{1,64}$")),
            feature_set=r.string("featureSet", pattern=re.compile(r"^[A-Za-z0-9._-]{1,64}$")),
            model_artifact=r.string("modelArtifact", pattern=_ARTIFACT_RE,
                                    hint="a SageMaker model archive path ending in .tar.gz"),
            xgboost_image_tag=r.string("xgboostImageTag", pattern=_IMAGE_TAG_RE, hint='e.g. "3.0-5"'),
            endpoint=_endpoint(reader, endpoint_raw),
            variants=_variants(reader, r.value("variants"), model_kind),
            retrain_schedule=r.string("retrainSchedule", pattern=_SCHEDULE_RE,
                                      hint='"rate(1 hour)" or "cron(...)"'),
            drift_schedule=r.string("driftSchedule", pattern=_SCHEDULE_RE, hint='"rate(1 hour)" or "cron(...)"'),
            alarms=_alarms(reader, alarms_raw),
            alarm_email=r.optional_string("alarmEmail", pattern=_EMAIL_RE),
            log_retention_days=r.choice("logRetentionDays", LOG_RETENTION_DAYS, cast=int),
            powertools_layer_version=_powertools_layer(reader),
            powertools_log_level=r.choice("powertoolsLogLevel", _LOG_LEVELS, cast=lambda v: str(v).upper(),
                                          default="INFO"),
            service_name=r.string("serviceName", pattern=re.compile(r"^[A-Za-z0-9._-]{1,64}$"),
                                  default="realtime-inference"),
            metrics_namespace=r.string("metricsNamespace", pattern=_NAMESPACE_RE, default="RealtimeInference"),
            functions=_functions(reader, functions_raw),
            api_throttle=_api_throttle(reader, throttle_raw),
            table_capacity=_table_capacity(reader, capacity_raw),
            removal_policy=r.choice("removalPolicy", ("retain", "destroy"), cast=lambda v: str(v).lower(),
                                    default="retain"),
            model_kind=model_kind,
            pytorch_model_artifact=r.string("pytorchModelArtifact", pattern=_ARTIFACT_RE,
                                            hint="a SageMaker PyTorch model archive path ending in .tar.gz",
                                            default="model/artifacts/pytorch/model.tar.gz"),
            pytorch_image_tag=r.string("pytorchImageTag", pattern=_PYTORCH_TAG_RE,
                                       hint='a CPU, Python 3 pytorch-inference tag, e.g. "2.6.0-cpu-py312"',
                                       default="2.6.0-cpu-py312"),
            region=r.optional_string("region", pattern=_REGION_RE),
        )
        reader.check(config)
        if reader.errors:
            raise ConfigError("invalid CDK context (cdk.json \"context\" or `cdk -c key=value`):\n  - "
                              + "\n  - ".join(reader.errors))
        return config

    @classmethod
    def from_mapping(cls, context: Mapping[str, Any]) -> "Config":
        return cls.from_context(context.get)

    def function(self, function_id: str) -> FunctionSettings:
        return self.functions[function_id]


KNOWN_KEYS = frozenset({
    "stackName", "shardCount", "batchSize", "batchingWindowSeconds", "minBatchSize", "maxBatchSize",
    "invokeChunkSize", "maxRecordAgeSeconds", "maxRetryAttempts", "latencySloSeconds", "modelVersion",
    "featureSet", "modelArtifact", "xgboostImageTag", "endpoint", "variants", "retrainSchedule", "driftSchedule",
    "alarms", "alarmEmail", "logRetentionDays", "powertoolsLayerVersion", "powertoolsLogLevel", "serviceName",
    "metricsNamespace", "functions", "apiThrottle", "removalPolicy", "modelKind", "pytorchModelArtifact",
    "pytorchImageTag", "region", "tableCapacity"})


def unknown_keys(context: Mapping[str, Any]) -> list[str]:
    """Project keys in a cdk.json context that this stack does not know (typos). CDK's own keys are skipped."""
    return sorted(k for k in context if not k.startswith("@") and ":" not in k and k not in KNOWN_KEYS
                  and k not in ("cli-telemetry", "acknowledged-issue-numbers"))


# -- helpers ----------------------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, get: Callable[[str], Any]):
        self.get = get
        self.errors: list[str] = []

    def value(self, key: str, default: Any = None) -> Any:
        value = self.get(key)
        return default if value is None else value

    def _missing(self, key: str) -> None:
        self.errors.append(f"{key}: missing")

    def string(self, key: str, pattern: re.Pattern | None = None, hint: str = "", default: str | None = None) -> str:
        value = self.value(key, default)
        if value is None:
            self._missing(key)
            return ""
        if not isinstance(value, str) or not value.strip():
            self.errors.append(f"{key}: expected a non-empty string, got {value!r}")
            return ""
        if pattern is not None and not pattern.match(value):
            self.errors.append(f"{key}: {value!r} is not valid" + (f" ({hint})" if hint else ""))
        return value

    def optional_string(self, key: str, pattern: re.Pattern | None = None) -> str | None:
        value = self.value(key)
        if value in (None, ""):
            return None
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            self.errors.append(f"{key}: {value!r} is not valid")
            return None
        return value

    def _number(self, label: str, value: Any, integer: bool) -> float | int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if integer:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def _bounded(self, label: str, value: Any, low: float, high: float, integer: bool,
                 allow: tuple = ()) -> Any:
        number = self._number(label, value, integer)
        kind = "an integer" if integer else "a number"
        if number is None:
            self.errors.append(f"{label}: expected {kind}, got {value!r}")
            return 0
        if number in allow:
            return number
        if not low <= number <= high:
            extra = f" (or {', '.join(map(str, allow))})" if allow else ""
            self.errors.append(f"{label}: {number} is out of range {low}..{high}{extra}")
        return number

    def integer(self, key: str, low: int, high: int, allow: tuple = (), default: int | None = None) -> int:
        value = self.value(key, default)
        if value is None:
            self._missing(key)
            return 0
        return self._bounded(key, value, low, high, True, allow)

    def number(self, key: str, low: float, high: float) -> float:
        value = self.value(key)
        if value is None:
            self._missing(key)
            return 0.0
        return float(self._bounded(key, value, low, high, False))

    def nested_integer(self, parent: str, raw: Mapping, key: str, default: int, low: int, high: int) -> int:
        return self._bounded(f"{parent}.{key}", raw.get(key, default), low, high, True)

    def nested_number(self, parent: str, raw: Mapping, key: str, default: float, low: float, high: float) -> float:
        return float(self._bounded(f"{parent}.{key}", raw.get(key, default), low, high, False))

    def choice(self, key: str, choices: tuple, cast: Callable[[Any], Any], default: Any = None) -> Any:
        value = self.value(key, default)
        if value is None:
            self._missing(key)
            return choices[0]
        try:
            value = cast(json.loads(value) if isinstance(value, str) and cast is int else value)
        except (TypeError, ValueError):
            pass
        if value not in choices:
            self.errors.append(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
            return choices[0]
        return value

    def mapping(self, key: str, default: dict) -> dict:
        value = self.value(key, default)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if not isinstance(value, dict):
            self.errors.append(f"{key}: expected an object, got {value!r}")
            return {}
        return value

    def check(self, config: Config) -> None:
        """Rules across several settings."""
        if config.min_batch_size > config.max_batch_size:
            self.errors.append(f"minBatchSize ({config.min_batch_size}) is larger than maxBatchSize "
                               f"({config.max_batch_size})")
        elif not config.min_batch_size <= config.batch_size <= config.max_batch_size:
            self.errors.append(f"batchSize ({config.batch_size}) must lie within minBatchSize..maxBatchSize "
                               f"({config.min_batch_size}..{config.max_batch_size})")
        if config.invoke_chunk_size > config.max_batch_size:
            self.errors.append(f"invokeChunkSize ({config.invoke_chunk_size}) is larger than maxBatchSize "
                               f"({config.max_batch_size}): a chunk never exceeds a batch")
        throttle = config.api_throttle
        if throttle.predict_rate_limit > throttle.rate_limit or throttle.predict_burst_limit > throttle.burst_limit:
            self.errors.append("apiThrottle: predictRateLimit/predictBurstLimit must not exceed rateLimit/burstLimit "
                               "(a route's limit above the stage's has no effect)")
        _check_endpoint(self, config)
        _check_images(self, config)
        from . import express_budget  # the Express 5-minute budget assumes each task fits in its state's timeout
        self.errors.extend(express_budget.function_timeout_problems(
            express_budget.load(), {f: s.timeout_seconds for f, s in config.functions.items()}))


def _powertools_layer(r: _Reader) -> int | str:
    """powertoolsLayerVersion: "ssm" (default) or a layer version number that serves the pinned Powertools release."""
    from . import runtime

    value = r.value("powertoolsLayerVersion", runtime.POWERTOOLS_SSM)
    if isinstance(value, str) and value.strip().lower() == runtime.POWERTOOLS_SSM:
        value = runtime.POWERTOOLS_SSM
    else:
        before = len(r.errors)
        value = r.integer("powertoolsLayerVersion", 1, 10_000)
        if len(r.errors) > before:
            return value
    problem = runtime.check_layer_version(value, runtime.powertools_release())
    if problem:
        r.errors.append(problem)
    return value


def _endpoint(r: _Reader, raw: Mapping) -> EndpointSettings:
    mode = str(raw.get("mode", "serverless")).lower()
    if mode not in ("serverless", "instance"):
        r.errors.append(f"endpoint.mode: {mode!r} is not one of serverless, instance")
        mode = "serverless"
    memory = r.nested_integer("endpoint", raw, "serverlessMemoryMb", 2048, 1024, 6144)
    if memory not in SERVERLESS_MEMORY_MB:
        r.errors.append(f"endpoint.serverlessMemoryMb: {memory} is not one of "
                        f"{', '.join(map(str, SERVERLESS_MEMORY_MB))} (Serverless Inference memory comes in 1 GB "
                        "steps from 1024 to 6144 MB)")
    concurrency = r.nested_integer("endpoint", raw, "serverlessMaxConcurrency", 5, *SERVERLESS_MAX_CONCURRENCY)
    instance_type = str(raw.get("instanceType", "ml.m5.large"))
    if not _INSTANCE_TYPE_RE.match(instance_type):
        r.errors.append(f"endpoint.instanceType: {instance_type!r} is not a SageMaker instance type (ml.x.y)")
    capture = r.nested_integer("endpoint", raw, "dataCapturePercent", 0, 0, 100)
    if mode == "serverless" and capture:
        r.errors.append(f"endpoint.dataCapturePercent: {capture} with endpoint.mode serverless: SageMaker Serverless "
                        "Inference does not support data capture. Set endpoint.mode to \"instance\" or "
                        "endpoint.dataCapturePercent to 0")
    return EndpointSettings(
        mode=mode, serverless_memory_mb=memory, serverless_max_concurrency=concurrency,
        instance_type=instance_type,
        instance_count=r.nested_integer("endpoint", raw, "instanceCount", 1, 1, 100),
        data_capture_percent=capture)


def _api_throttle(r: _Reader, raw: Mapping) -> ApiThrottle:
    return ApiThrottle(
        rate_limit=r.nested_integer("apiThrottle", raw, "rateLimit", 200, 1, 100_000),
        burst_limit=r.nested_integer("apiThrottle", raw, "burstLimit", 400, 1, 100_000),
        predict_rate_limit=r.nested_integer("apiThrottle", raw, "predictRateLimit", 10, 1, 100_000),
        predict_burst_limit=r.nested_integer("apiThrottle", raw, "predictBurstLimit", 5, 1, 100_000))


def _table_capacity(r: _Reader, raw: Mapping) -> TableCapacity:
    mode = str(raw.get("mode", "on_demand")).lower()
    if mode not in ("on_demand", "provisioned"):
        r.errors.append(f"tableCapacity.mode: {mode!r} is not one of on_demand, provisioned")
        mode = "on_demand"
    low = r.nested_integer("tableCapacity", raw, "minCapacity", 5, 1, DDB_TABLE_CAPACITY_QUOTA)
    high = r.nested_integer("tableCapacity", raw, "maxCapacity", 10_000, 1, DDB_TABLE_CAPACITY_QUOTA)
    if low > high:
        r.errors.append(f"tableCapacity: minCapacity ({low}) is larger than maxCapacity ({high})")
    if mode == "provisioned" and high * DDB_AUTOSCALED_TARGETS > DDB_ACCOUNT_CAPACITY_QUOTA:
        r.errors.append(f"tableCapacity.maxCapacity: {high} on each of {DDB_AUTOSCALED_TARGETS} tables and indexes "
                        f"could provision {high * DDB_AUTOSCALED_TARGETS:,} units, past the default account quota "
                        f"of {DDB_ACCOUNT_CAPACITY_QUOTA:,} per Region: lower it or raise the quota first")
    return TableCapacity(
        mode=mode, min_capacity=low, max_capacity=high,
        # 20-90 %: the DynamoDB console's range for target utilization (aws-cdk-lib itself rejects < 10 or > 90)
        target_utilization_percent=r.nested_integer("tableCapacity", raw, "targetUtilizationPercent", 70, 20, 90))


def _check_images(r: _Reader, config: "Config") -> None:
    """The image tags must be the versions infra/image_registries.json was generated for, and a concrete region must
    have every deployed kind's image (else CloudFormation fails on Fn::FindInMap, or SageMaker cannot pull)."""
    from . import images

    for kind, key, tag in (("xgboost", "xgboostImageTag", config.xgboost_image_tag),
                           ("pytorch", "pytorchImageTag", config.pytorch_image_tag)):
        if tag and images.image_version(kind, tag) != images.VERSIONS[kind]:
            r.errors.append(f"{key}: {tag!r} is not the {kind} version infra/image_registries.json maps "
                            f"({images.VERSIONS[kind]}, from {images.SOURCE}): run scripts/update_image_map.py "
                            "after changing it (the registry accounts are per image version)")
    if config.region:
        for kind in dict.fromkeys(v.kind for v in config.variants):
            problem = images.region_problem(kind, config.region, config.image_tag(kind))
            if problem:
                r.errors.append(f"region: {problem}")


def _feature_width(feature_set: str) -> int | None:
    """Number of features of ``feature_set`` as the Lambda code defines them (None: unknown feature set)."""
    import importlib
    import sys
    from pathlib import Path

    functions = str(Path(__file__).resolve().parent.parent / "functions")
    if functions not in sys.path:
        sys.path.append(functions)
    features = importlib.import_module("pipeline.features")
    try:
        return len(features.feature_names(feature_set))
    except Exception:  # noqa: BLE001 - FeatureSetError: an unknown feature set
        return None


def _check_endpoint(r: _Reader, config: "Config") -> None:
    """Endpoint rules across settings: what SageMaker would refuse at deploy or at invocation time."""
    endpoint = config.endpoint
    if endpoint.mode == "instance" and len(config.variants) > MAX_PRODUCTION_VARIANTS:
        r.errors.append(f"variants: {len(config.variants)} variants with endpoint.mode instance, but an endpoint "
                        f"configuration holds at most {MAX_PRODUCTION_VARIANTS} production variants. Remove variants "
                        "or use endpoint.mode \"serverless\" (one endpoint per variant)")
    if not config.feature_set:
        return
    width = _feature_width(config.feature_set)
    if width is None:
        r.errors.append(f"featureSet: {config.feature_set!r} is not a feature set of functions/pipeline/features.py")
        return
    limit, what = ((SERVERLESS_PAYLOAD_BYTES, "a serverless endpoint accepts at most 4 MB per request")
                   if endpoint.mode == "serverless" else
                   (REALTIME_PAYLOAD_BYTES, "InvokeEndpoint accepts at most 6 MB per request"))
    row_bytes = width * CSV_BYTES_PER_FEATURE
    chunk = min(config.invoke_chunk_size, config.max_batch_size)
    if chunk * row_bytes > limit:
        r.errors.append(f"invokeChunkSize: {chunk} rows of feature set {config.feature_set} ({width} features, up to "
                        f"{row_bytes} bytes per text/csv row) can reach {chunk * row_bytes:,} bytes, and {what}. "
                        f"Set invokeChunkSize to at most {limit // row_bytes}")


def _variants(r: _Reader, raw: Any, default_kind: str = "xgboost") -> tuple[Variant, ...]:
    if raw is None:
        raw = [{"name": "primary", "weight": 1.0}]
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            pass
    if not isinstance(raw, list) or not raw:
        r.errors.append(f"variants: expected a non-empty list of {{name, weight}}, got {raw!r}")
        return (Variant("primary", 1.0),)
    variants, names = [], set()
    for index, item in enumerate(raw):
        label = f"variants[{index}]"
        if not isinstance(item, dict):
            r.errors.append(f"{label}: expected an object {{name, weight}}, got {item!r}")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not _VARIANT_RE.match(name):
            r.errors.append(f"{label}.name: {name!r} is not a valid variant name (letters, digits, hyphens; <= 63)")
            continue
        if name.lower() in names:
            r.errors.append(f"{label}.name: duplicate variant name {name!r}")
        names.add(name.lower())
        weight = r.nested_number(label, item, "weight", 1.0, 0.0, 1000.0)
        artifact = item.get("modelArtifact")
        if artifact is not None and (not isinstance(artifact, str) or not _ARTIFACT_RE.match(artifact)):
            r.errors.append(f"{label}.modelArtifact: expected a path ending in .tar.gz, got {artifact!r}")
            artifact = None
        kind = str(item.get("kind", default_kind)).lower()
        if kind not in MODEL_KINDS:
            r.errors.append(f"{label}.kind: {item.get('kind')!r} is not one of {', '.join(MODEL_KINDS)}")
            kind = default_kind
        version = item.get("modelVersion")
        if version is not None and (not isinstance(version, str) or not _VERSION_RE.match(version)):
            r.errors.append(f"{label}.modelVersion: {version!r} is not a model version (letters, digits, . _ -)")
            version = None
        variants.append(Variant(name=name, weight=weight, model_artifact=artifact, kind=kind, model_version=version))
    if variants and not any(v.weight > 0 for v in variants):
        r.errors.append("variants: at least one variant needs a weight above 0")
    return tuple(variants) or (Variant("primary", 1.0),)


def _alarms(r: _Reader, raw: Mapping) -> AlarmSettings:
    def integer(key: str, default: int, low: int, high: int) -> int:
        return r.nested_integer("alarms", raw, key, default, low, high)

    def number(key: str, default: float, low: float, high: float) -> float:
        return r.nested_number("alarms", raw, key, default, low, high)

    return AlarmSettings(
        iterator_age_seconds=integer("iteratorAgeSeconds", 60, 1, 604_800),
        dlq_messages=integer("dlqMessages", 0, 0, 1_000_000),
        quarantine_messages=integer("quarantineMessages", 0, 0, 1_000_000),
        function_errors=integer("functionErrors", 1, 1, 1_000_000),
        state_machine_failures=integer("stateMachineFailures", 1, 1, 1_000_000),
        state_machine_timeouts=integer("stateMachineTimeouts", 1, 1, 1_000_000),
        model_latency_ms=integer("modelLatencyMs", 500, 1, 3_600_000),
        cost_per_thousand_events_usd=number("costPerThousandEventsUsd", 0.05, 0.0, 1_000_000.0),
        drift_psi=number("driftPsi", 0.25, 0.0, 100.0),
        period_seconds=integer("periodSeconds", 300, 60, 86_400),
        evaluation_periods=integer("evaluationPeriods", 1, 1, 100))


def _functions(r: _Reader, raw: Mapping) -> dict[str, FunctionSettings]:
    unknown = sorted(set(raw) - set(FUNCTION_IDS))
    if unknown:
        r.errors.append(f"functions: unknown function(s) {', '.join(unknown)} (known: {', '.join(FUNCTION_IDS)})")
    settings = {}
    for function_id in FUNCTION_IDS:
        given = raw.get(function_id) or {}
        if not isinstance(given, dict):
            r.errors.append(f"functions.{function_id}: expected an object {{memoryMb, timeoutSeconds}}")
            given = {}
        merged = {**DEFAULT_FUNCTIONS[function_id], **given}
        label = f"functions.{function_id}"
        settings[function_id] = FunctionSettings(
            memory_mb=r.nested_integer(label, merged, "memoryMb", 512, 128, 10_240),
            timeout_seconds=r.nested_integer(label, merged, "timeoutSeconds", 30, 1, 900))
    api = settings["ApiFunction"]
    if api.timeout_seconds > 30:
        r.errors.append(f"functions.ApiFunction.timeoutSeconds: {api.timeout_seconds} exceeds the HTTP API "
                        "integration limit of 30 s")
    return settings
