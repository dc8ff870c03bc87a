"""infra/config.py: the typed, validated CDK context (no synthesis here)."""
from __future__ import annotations

import pytest

from infra.config import KNOWN_KEYS, Config, ConfigError, unknown_keys


@pytest.fixture
def context(cdk_json) -> dict:
    return dict(cdk_json["context"])


def test_cdk_json_context_is_valid_and_complete(context):
    config = Config.from_mapping(context)
    assert config.stack_name == "RealtimeInference"
    assert (config.shard_count, config.batch_size, config.batching_window_seconds) == (2, 100, 1)
    assert (config.min_batch_size, config.max_batch_size, config.invoke_chunk_size) == (10, 500, 100)
    assert (config.max_record_age_seconds, config.max_retry_attempts, config.latency_slo_seconds) == (3600, 3, 2)
    assert (config.model_version, config.feature_set, config.xgboost_image_tag) == ("xgb-1", "v1", "3.0-5")
    assert config.model_artifact == "model/artifacts/model.tar.gz"
    assert config.endpoint.mode == "serverless"
    assert (config.endpoint.serverless_memory_mb, config.endpoint.serverless_max_concurrency) == (2048, 5)
    # A/B: the XGBoost model and the PyTorch model of the same task, each with its container image and version
    assert [(v.name, v.weight, v.kind, config.version_of(v)) for v in config.variants] == [
        ("primary", 0.8, "xgboost", "xgb-1"), ("challenger", 0.2, "pytorch", "torch-1")]
    assert [config.artifact_of(v) for v in config.variants] == [
        "model/artifacts/model.tar.gz", "model/artifacts/pytorch/model.tar.gz"]
    assert (config.model_kind, config.pytorch_image_tag) == ("xgboost", "2.6.0-cpu-py312")
    assert config.retrain_schedule == config.drift_schedule == "rate(1 hour)"
    assert config.powertools_layer_version == "ssm"   # the pinned release's layer (infra/runtime.py)
    # every setting the stack reads is spelled out in cdk.json (no hidden defaults), and nothing unknown is there
    assert KNOWN_KEYS <= set(context)
    assert unknown_keys(context) == []


def test_cli_string_values_are_accepted(context):
    """`cdk -c key=value` passes strings: numbers, JSON objects and lists still work."""
    context.update(shardCount="4", batchSize="250", latencySloSeconds="1.5", logRetentionDays="30",
                   endpoint='{"mode": "instance", "instanceType": "ml.c5.large", "instanceCount": 2}',
                   variants='[{"name": "a", "weight": 0.9}, {"name": "b", "weight": 0.1}]')
    config = Config.from_mapping(context)
    assert (config.shard_count, config.batch_size, config.latency_slo_seconds) == (4, 250, 1.5)
    assert config.log_retention_days == 30
    assert (config.endpoint.mode, config.endpoint.instance_type, config.endpoint.instance_count) == (
        "instance", "ml.c5.large", 2)
    assert [v.name for v in config.variants] == ["a", "b"]
    assert [v.kind for v in config.variants] == [config.model_kind] * 2   # a variant's kind defaults to modelKind


def test_model_kind_is_the_default_kind_of_every_variant(context):
    context.update(modelKind="pytorch", variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1,
                                                                               "kind": "xgboost"}])
    config = Config.from_mapping(context)
    assert [(v.kind, config.artifact_of(v)) for v in config.variants] == [
        ("pytorch", context["pytorchModelArtifact"]), ("xgboost", context["modelArtifact"])]


def test_every_problem_is_reported_at_once(context):
    context.update(shardCount=0, batchSize="lots", retrainSchedule="every hour", logRetentionDays=13,
                   modelArtifact="model/artifacts/model.zip", xgboostImageTag="latest",
                   variants=[{"name": "bad name", "weight": 1}], maxRecordAgeSeconds=10)
    del context["featureSet"]
    with pytest.raises(ConfigError) as error:
        Config.from_mapping(context)
    message = str(error.value)
    for needle in ("shardCount: 0 is out of range", "batchSize: expected an integer", "retrainSchedule",
                   "logRetentionDays: 13 is not one of", "modelArtifact", "xgboostImageTag", "variants[0].name",
                   "maxRecordAgeSeconds: 10 is out of range 60..604800 (or -1)", "featureSet: missing"):
        assert needle in message, needle


@pytest.mark.parametrize("changes,needle", [
    ({"minBatchSize": 600}, "minBatchSize (600) is larger than maxBatchSize (500)"),
    ({"batchSize": 5}, "batchSize (5) must lie within minBatchSize..maxBatchSize (10..500)"),
    ({"invokeChunkSize": 501}, "invokeChunkSize (501) is larger than maxBatchSize"),
    ({"variants": [{"name": "a", "weight": 1}, {"name": "A", "weight": 1}]}, "duplicate variant name"),
    ({"variants": [{"name": "a", "weight": 0}]}, "at least one variant needs a weight above 0"),
    ({"variants": []}, "non-empty list"),
    ({"endpoint": {"serverlessMemoryMb": 1500}}, "endpoint.serverlessMemoryMb: 1500 is not one of"),
    ({"endpoint": {"mode": "gpu"}}, "endpoint.mode"),
    ({"functions": {"ApiFunction": {"timeoutSeconds": 60}}}, "exceeds the HTTP API integration limit"),
    ({"functions": {"NoSuchFunction": {}}}, "unknown function(s) NoSuchFunction"),
    ({"alarmEmail": "not-an-address"}, "alarmEmail"),
    ({"removalPolicy": "snapshot"}, "removalPolicy"),
    ({"modelKind": "sklearn"}, "modelKind: 'sklearn' is not one of xgboost, pytorch"),
    ({"variants": [{"name": "a", "weight": 1, "kind": "onnx"}]}, "variants[0].kind: 'onnx' is not one of"),
    ({"variants": [{"name": "a", "weight": 1, "modelVersion": "v 2"}]}, "variants[0].modelVersion"),
    ({"pytorchImageTag": "2.6.0-gpu-py312-cu124"}, "pytorchImageTag"),   # CPU images only
    ({"pytorchModelArtifact": "model.pth"}, "pytorchModelArtifact"),
    # what SageMaker refuses (infra/config.py cites the documents)
    ({"endpoint": {"serverlessMaxConcurrency": 201}}, "endpoint.serverlessMaxConcurrency: 201 is out of range 1..200"),
    ({"endpoint": {"serverlessMemoryMb": 7168}}, "endpoint.serverlessMemoryMb: 7168 is out of range 1024..6144"),
    ({"endpoint": {"mode": "serverless", "dataCapturePercent": 10}},
     "SageMaker Serverless Inference does not support data capture. Set endpoint.mode to \"instance\""),
    ({"endpoint": {"mode": "instance", "dataCapturePercent": 101}}, "endpoint.dataCapturePercent: 101 is out of range"),
    ({"endpoint": {"mode": "instance"}, "variants": [{"name": f"v{i}", "weight": 1} for i in range(11)]},
     "an endpoint configuration holds at most 10 production variants"),
    # 25 features x 25 bytes per text/csv row: 10,000 rows can reach 6.25 MB, over a serverless endpoint's 4 MiB
    # (an instance endpoint's 6 MiB still holds them; 10,000 rows of v1's 15 features fit in both)
    ({"featureSet": "v2", "maxBatchSize": 10_000, "invokeChunkSize": 10_000},
     "a serverless endpoint accepts at most 4 MB per request. Set invokeChunkSize to at most 6710"),
    ({"featureSet": "v9"}, "featureSet: 'v9' is not a feature set"),
    # the Express 5-minute budget: a task function must fit in its state's TimeoutSeconds with its cold start
    ({"functions": {"InvokeModelFunction": {"timeoutSeconds": 120}}},
     "functions.InvokeModelFunction.timeoutSeconds: 120 s + 10 s of cold-start init exceeds the InvokeModel state's "
     "TimeoutSeconds (80) in statemachines/inference.asl.json. Lower it to at most 70"),
    ({"functions": {"StorePredictionsFunction": {"timeoutSeconds": 60}}}, "Lower it to at most 30"),
])
def test_rules_across_settings(context, changes, needle):
    context.update(changes)
    with pytest.raises(ConfigError, match="invalid CDK context") as error:
        Config.from_mapping(context)
    assert needle in str(error.value)


def test_serverless_ab_and_instance_limits_that_sagemaker_accepts(context):
    """Many variants are fine in serverless mode (one endpoint each); 10 is the instance-mode maximum."""
    many = [{"name": f"v{i}", "weight": 1} for i in range(12)]
    assert len(Config.from_mapping(dict(context, variants=many)).variants) == 12
    ten = dict(context, variants=many[:10], endpoint={"mode": "instance", "dataCapturePercent": 100})
    assert Config.from_mapping(ten).endpoint.data_capture_percent == 100


def test_infinite_record_age_and_retries(context):
    context.update(maxRecordAgeSeconds=-1, maxRetryAttempts=-1)
    config = Config.from_mapping(context)
    assert (config.max_record_age_seconds, config.max_retry_attempts) == (-1, -1)


def test_function_settings_merge_with_defaults(context):
    context["functions"] = {"ProcessStreamFunction": {"memoryMb": 2048}}
    config = Config.from_mapping(context)
    assert config.function("ProcessStreamFunction").memory_mb == 2048
    assert config.function("ProcessStreamFunction").timeout_seconds == 120   # default kept
    assert config.function("ApiFunction").timeout_seconds == 29


def test_unknown_keys_catch_typos_but_not_cdk_keys(context):
    context.update({"shardcount": 3, "@aws-cdk/core:newStyleStackSynthesis": True, "aws:cdk:foo": 1})
    assert unknown_keys(context) == ["shardcount"]
