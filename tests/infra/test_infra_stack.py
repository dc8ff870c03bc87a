"""The synthesized template: resources, names, settings, wiring and IAM (docs/wiring.md is the contract)."""
from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match

FUNCTION_HANDLERS = {
    "ApiFunction": "api.handler.handler",
    "ProcessStreamFunction": "process_stream.handler.handler",
    "InvokeModelFunction": "invoke_model.handler.handler",
    "StorePredictionsFunction": "store_predictions.handler.handler",
    "RecordCostFunction": "record_cost.handler.handler",
    "RetrainBatchSizeFunction": "retrain_batch_size.handler.handler",
    "MonitorDriftFunction": "monitor_drift.handler.handler",
}
IMAGE_FUNCTIONS = ("RetrainBatchSizeFunction", "MonitorDriftFunction")
TASK_FUNCTIONS = ("InvokeModelFunction", "StorePredictionsFunction", "RecordCostFunction")

# env var -> (logical-id prefix, resource type, how the value refers to it)
ENV_REFERENCES = {
    "EVENTS_STREAM_NAME": ("EventsStream", "AWS::Kinesis::Stream", "Ref"),
    "EVENTS_TABLE": ("EventsTable", "AWS::DynamoDB::Table", "Ref"),
    "PREDICTIONS_TABLE": ("PredictionsTable", "AWS::DynamoDB::Table", "Ref"),
    "FEATURES_TABLE": ("FeaturesTable", "AWS::DynamoDB::Table", "Ref"),
    "COST_TABLE": ("CostTable", "AWS::DynamoDB::Table", "Ref"),
    "STATE_TABLE": ("StateTable", "AWS::DynamoDB::Table", "Ref"),
    "ARTIFACTS_BUCKET": ("ArtifactsBucket", "AWS::S3::Bucket", "Ref"),
    "QUARANTINE_QUEUE_URL": ("QuarantineQueue", "AWS::SQS::Queue", "Ref"),
    "STREAM_DLQ_URL": ("StreamDlq", "AWS::SQS::Queue", "Ref"),
    "STATE_MACHINE_ARN": ("InferenceStateMachine", "AWS::StepFunctions::StateMachine", "Ref"),
    "EVENT_SOURCE_MAPPING_ID": ("EventsStreamMapping", "AWS::Lambda::EventSourceMapping", "Ref"),
    "SAGEMAKER_ENDPOINT_NAME": ("Endpoint", "AWS::SageMaker::Endpoint", "GetAtt"),
}
SHARED_ENV = {"EVENTS_STREAM_NAME", "EVENTS_TABLE", "PREDICTIONS_TABLE", "FEATURES_TABLE", "COST_TABLE", "STATE_TABLE",
              "SAGEMAKER_ENDPOINT_NAME", "ARTIFACTS_BUCKET", "QUARANTINE_QUEUE_URL", "STREAM_DLQ_URL", "BATCH_SIZE",
              "BATCHING_WINDOW_SECONDS", "MIN_BATCH_SIZE", "MAX_BATCH_SIZE", "INVOKE_CHUNK_SIZE",
              "LATENCY_SLO_SECONDS", "MODEL_VERSION", "FEATURE_SET", "POWERTOOLS_SERVICE_NAME",
              "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL", "MODEL_DATA_URL", "COST_PROFILE",
              "MODEL_VARIANTS", "POWERTOOLS_TRACER_CAPTURE_RESPONSE"}


def test_resource_counts(synth):
    t = synth.assertions
    expected = {
        "AWS::Lambda::Function": 7, "AWS::Lambda::EventSourceMapping": 1, "AWS::Kinesis::Stream": 1,
        "AWS::DynamoDB::Table": 5, "AWS::SQS::Queue": 2, "AWS::S3::Bucket": 2, "AWS::StepFunctions::StateMachine": 1,
        # serverless A/B: one endpoint (and endpoint config) per variant
        "AWS::SageMaker::Model": 2, "AWS::SageMaker::EndpointConfig": 2, "AWS::SageMaker::Endpoint": 2,
        "AWS::Events::Rule": 2, "AWS::ApiGatewayV2::Api": 1, "AWS::ApiGatewayV2::Route": 15,
        "AWS::ApiGatewayV2::Integration": 1, "AWS::ApiGatewayV2::Stage": 1, "AWS::CloudWatch::Dashboard": 1,
        "AWS::SNS::Topic": 1, "AWS::KMS::Key": 1,
        # stream age, DLQ, quarantine, 7 function errors, failed and timed-out executions, model latency per variant,
        # cost, drift
        "AWS::CloudWatch::Alarm": 13 + len(synth.config.variants) + 1,
        # one explicit log group per function, the state machine's and the API's access logs
        "AWS::Logs::LogGroup": 9,
        "AWS::DynamoDB::GlobalTable": 0, "AWS::Lambda::LayerVersion": 0, "AWS::IAM::ManagedPolicy": 0,
    }
    for resource_type, count in expected.items():
        t.resource_count_is(resource_type, count)


def test_no_custom_resources_and_no_cdk_metadata(synth):
    """The local cloud cannot run custom resources (and none is needed): no log-retention or auto-delete
    helpers, no CDK metadata resource."""
    types = {r["Type"] for r in synth.resources.values()}
    assert not {t for t in types if t.startswith("Custom::") or t == "AWS::CloudFormation::CustomResource"}
    assert "AWS::CDK::Metadata" not in types


@pytest.mark.parametrize("prefix,resource_type", [
    *[(f, "AWS::Lambda::Function") for f in FUNCTION_HANDLERS],
    ("EventsStream", "AWS::Kinesis::Stream"),
    *[(t, "AWS::DynamoDB::Table") for t in ("EventsTable", "PredictionsTable", "FeaturesTable", "CostTable",
                                           "StateTable")],
    ("StreamDlq", "AWS::SQS::Queue"), ("QuarantineQueue", "AWS::SQS::Queue"),
    ("ArtifactsBucket", "AWS::S3::Bucket"), ("InferenceStateMachine", "AWS::StepFunctions::StateMachine"),
    ("Model", "AWS::SageMaker::Model"), ("EndpointConfig", "AWS::SageMaker::EndpointConfig"),
    ("Endpoint", "AWS::SageMaker::Endpoint"), ("HttpApi", "AWS::ApiGatewayV2::Api"),
])
def test_logical_ids_of_the_wiring_contract(synth, prefix, resource_type):
    synth.logical_id(prefix, resource_type)


def props_name(resource: dict) -> str:
    return resource["Properties"]["Name"]


def test_no_fixed_physical_names(synth):
    """Two copies of the stack can coexist: CloudFormation names everything (the state machine's log group name
    is derived from the stack name)."""
    name_keys = {"FunctionName", "TableName", "QueueName", "BucketName", "Name", "StateMachineName", "ModelName",
                 "EndpointName", "EndpointConfigName", "RoleName", "TopicName", "DashboardName", "AlarmName",
                 "LogGroupName", "StreamName"}
    for lid, resource in synth.resources.items():
        if resource["Type"] == "AWS::ApiGatewayV2::Api":
            assert props_name(resource) == f"{synth.stack.stack_name}-api"   # required; per stack, need not be unique
            continue
        props = resource.get("Properties", {})
        fixed = {k for k in name_keys & set(props) if isinstance(props[k], str)}   # not a reference to a resource
        assert not fixed, f"{lid} has a fixed physical name: {fixed}"
    log_group = synth.props("InferenceLogs", "AWS::Logs::LogGroup")["LogGroupName"]
    assert {"Ref": "AWS::StackName"} in log_group["Fn::Join"][1]


def test_kinesis_stream(synth):
    synth.assertions.has_resource_properties("AWS::Kinesis::Stream", {
        "ShardCount": synth.config.shard_count,
        "StreamModeDetails": {"StreamMode": "PROVISIONED"},
        "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
    })


def test_event_source_mapping(synth):
    cfg = synth.config
    mapping = synth.props("EventsStreamMapping", "AWS::Lambda::EventSourceMapping")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [synth.logical_id("EventsStream", "AWS::Kinesis::Stream"),
                                                        "Arn"]}
    assert mapping["FunctionName"] == {"Ref": synth.logical_id("ProcessStreamFunction", "AWS::Lambda::Function")}
    assert mapping["BatchSize"] == cfg.batch_size == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == cfg.batching_window_seconds == 1
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumRecordAgeInSeconds"] == cfg.max_record_age_seconds == 3600
    assert mapping["MaximumRetryAttempts"] == cfg.max_retry_attempts == 3
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {
        "Fn::GetAtt": [synth.logical_id("StreamDlq", "AWS::SQS::Queue"), "Arn"]}}}
    # One batch per shard at a time: ParallelizationFactor's default is 1 ("Lambda parameters for Amazon Kinesis Data
    # Streams event source mappings", https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-parameters.html).
    # The exactly-once counters (one conditional update per shard) and the states kept warm (pipeline/warm.py: the
    # counters item names the shard's last writer) both rely on it.
    assert mapping.get("ParallelizationFactor", 1) == 1
    # created after the consumer's permissions (the service checks them on creation)
    depends = synth.resources[synth.logical_id("EventsStreamMapping", "AWS::Lambda::EventSourceMapping")]["DependsOn"]
    assert any(d.startswith("ProcessStreamRoleDefaultPolicy") for d in depends)


@pytest.mark.parametrize("table,keys,ttl", [
    ("EventsTable", [("event_id", "HASH", "S")], "expires_at"),
    ("PredictionsTable", [("event_id", "HASH", "S")], "expires_at"),
    ("FeaturesTable", [("user_id", "HASH", "S"), ("feature_set", "RANGE", "S")], None),
    ("CostTable", [("day", "HASH", "S"), ("batch_key", "RANGE", "S")], None),
    ("StateTable", [("pk", "HASH", "S")], None),
])
def test_tables(synth, table, keys, ttl):
    props = synth.props(table, "AWS::DynamoDB::Table")
    assert props["KeySchema"] == [{"AttributeName": n, "KeyType": k} for n, k, _ in keys]
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert all(types[n] == t for n, _, t in keys)
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    if ttl:
        assert props["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in props


def test_predictions_index_by_user(synth):
    props = synth.props("PredictionsTable", "AWS::DynamoDB::Table")
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_user"
    assert index["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"},
                                  {"AttributeName": "ts", "KeyType": "RANGE"}]
    assert {"AttributeName": "ts", "AttributeType": "N"} in props["AttributeDefinitions"]
    assert index["Projection"] == {"ProjectionType": "ALL"}


@pytest.mark.parametrize("queue", ["StreamDlq", "QuarantineQueue"])
def test_queues_encrypted_and_ssl_only(synth, queue):
    lid = synth.logical_id(queue, "AWS::SQS::Queue")
    assert synth.resources[lid]["Properties"]["KmsMasterKeyId"] == "alias/aws/sqs"
    policies = [p["Properties"] for p in synth.of_type("AWS::SQS::QueuePolicy").values()
                if {"Ref": lid} in p["Properties"]["Queues"]]
    [policy] = policies
    [deny] = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_artifacts_bucket(synth):
    lid = synth.logical_id("ArtifactsBucket", "AWS::S3::Bucket")
    props = synth.resources[lid]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"}
    assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": synth.logical_id("AccessLogsBucket", "AWS::S3::Bucket")}
    for bucket_policy in synth.of_type("AWS::S3::BucketPolicy").values():   # both buckets are SSL-only
        statements = bucket_policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements)
    assert len(synth.of_type("AWS::S3::BucketPolicy")) == 2


def test_functions_runtime_handler_tracing_logs(synth):
    cfg = synth.config
    for function_id, handler in FUNCTION_HANDLERS.items():
        props = synth.function(function_id)
        assert props["TracingConfig"] == {"Mode": "Active"}, function_id
        log_group = synth.resources[props["LoggingConfig"]["LogGroup"]["Ref"]]
        assert log_group["Type"] == "AWS::Logs::LogGroup"
        assert log_group["Properties"]["RetentionInDays"] == cfg.log_retention_days
        settings = cfg.function(function_id)
        assert (props["MemorySize"], props["Timeout"]) == (settings.memory_mb, settings.timeout_seconds)
        if function_id in IMAGE_FUNCTIONS:
            assert props["PackageType"] == "Image"
            assert props["ImageConfig"] == {"Command": [handler]}
            assert "Layers" not in props and "Runtime" not in props
        else:
            assert props["Runtime"] == "python3.12"
            assert props["Handler"] == handler
            # the pinned Powertools release's public layer, read from its SSM parameter at deploy time
            [layer] = props["Layers"]
            parameter = synth.template["Parameters"][layer["Ref"]]
            assert parameter == {"Type": "AWS::SSM::Parameter::Value<String>",
                                 "Default": "/aws/service/powertools/python/x86_64/python3.12/3.37.0"}


def test_function_code_assets(synth):
    """Zip functions: one asset of functions/ without the image files and ML handlers; the image asset has the
    Dockerfile, the shared library and both ML handlers."""
    assets = json.loads((synth.outdir / f"{synth.stack.artifact_id}.assets.json").read_text())
    keys = {synth.function(f)["Code"]["S3Key"] for f in FUNCTION_HANDLERS if f not in IMAGE_FUNCTIONS}
    assert len(keys) == 1
    [zip_asset] = [a for a in assets["files"].values() if a["source"].get("packaging") == "zip"]
    staged = synth.outdir / zip_asset["source"]["path"]
    names = {p.relative_to(staged).as_posix() for p in staged.rglob("*")}
    assert {"api/handler.py", "process_stream/handler.py", "pipeline/settings.py"} <= names
    assert not {n for n in names if n.startswith(("retrain_batch_size", "monitor_drift")) or
                n in ("Dockerfile", "requirements-ml.txt") or "__pycache__" in n}
    [image] = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "Dockerfile" and image["source"]["platform"] == "linux/amd64"
    context = synth.outdir / image["source"]["directory"]
    for path in ("Dockerfile", "requirements-ml.txt", "pipeline/optimizer/__init__.py", "pipeline/optimizer/policy.py", "retrain_batch_size/handler.py",
                 "monitor_drift/handler.py"):
        assert (context / path).is_file(), path


def test_function_environment(synth):
    """The shared set of docs/wiring.md; values that would be dependency cycles stay off the functions that
    would close them."""
    cfg = synth.config
    for function_id in FUNCTION_HANDLERS:
        env = synth.function(function_id)["Environment"]["Variables"]
        expected = set(SHARED_ENV)
        if function_id not in TASK_FUNCTIONS:
            expected.add("STATE_MACHINE_ARN")
        if function_id not in TASK_FUNCTIONS and function_id != "ProcessStreamFunction":
            expected.add("EVENT_SOURCE_MAPPING_ID")
        assert set(env) == expected, function_id
        assert env["BATCH_SIZE"] == str(cfg.batch_size)
        assert env["BATCHING_WINDOW_SECONDS"] == str(cfg.batching_window_seconds)
        assert env["MIN_BATCH_SIZE"] == str(cfg.min_batch_size)
        assert env["MAX_BATCH_SIZE"] == str(cfg.max_batch_size)
        assert env["INVOKE_CHUNK_SIZE"] == str(cfg.invoke_chunk_size)
        assert float(env["LATENCY_SLO_SECONDS"]) == cfg.latency_slo_seconds
        assert (env["MODEL_VERSION"], env["FEATURE_SET"]) == (cfg.model_version, cfg.feature_set)
        # each variant with the endpoint serving it (serverless: its own), filled in by CloudFormation
        parts = env["MODEL_VARIANTS"]["Fn::Join"][1]
        rendered = "".join(p if isinstance(p, str) else f"<{p['Fn::GetAtt'][0]}>" for p in parts)
        assert json.loads(rendered) == [
            {"name": "primary", "weight": 0.8, "kind": "xgboost", "model_version": "xgb-1", "endpoint": "<Endpoint>"},
            {"name": "challenger", "weight": 0.2, "kind": "pytorch", "model_version": "torch-1",
             "endpoint": "<EndpointChallenger>"}]
        assert synth.template["Outputs"]["ModelVariants"]["Value"] == env["MODEL_VARIANTS"]
        profile = json.loads(env["COST_PROFILE"])
        assert (profile["shards"], profile["endpoint_mode"]) == (cfg.shard_count, cfg.endpoint.mode)
        assert env["POWERTOOLS_SERVICE_NAME"] == cfg.service_name
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == cfg.metrics_namespace
        # traces do not capture handler responses (per-user features and scores): Powertools Tracer's
        # POWERTOOLS_TRACER_CAPTURE_RESPONSE, https://docs.powertools.aws.dev/lambda/python/latest/core/tracer/
        assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
        for name, (prefix, resource_type, kind) in ENV_REFERENCES.items():
            if name not in env:
                continue
            lid = synth.logical_id(prefix, resource_type)
            if kind == "Ref":
                assert env[name] == {"Ref": lid}, (function_id, name)
            else:
                assert env[name] == {"Fn::GetAtt": [lid, "EndpointName"]}, (function_id, name)
        assert env["MODEL_DATA_URL"] == synth.props("Model", "AWS::SageMaker::Model")["PrimaryContainer"][
            "ModelDataUrl"]


def test_sagemaker_model_endpoint(synth):
    cfg = synth.config
    model = synth.props("Model", "AWS::SageMaker::Model")
    container = model["PrimaryContainer"]
    image = container["Image"]["Fn::Join"][1]
    assert image[0] == {"Fn::FindInMap": ["XgboostImageRegistry", {"Ref": "AWS::Region"}, "account"]}
    assert image[-1] == f"/sagemaker-xgboost:{cfg.xgboost_image_tag}" == "/sagemaker-xgboost:3.0-5"
    assert container["Environment"] == {"MODEL_VERSION": "xgb-1", "FEATURE_SET": cfg.feature_set}
    assert re.fullmatch(r"s3://cdk-[a-z0-9]+-assets-\$\{AWS::AccountId\}-\$\{AWS::Region\}/[0-9a-f]{64}\.gz",
                        container["ModelDataUrl"]["Fn::Sub"])
    registry = synth.template["Mappings"]["XgboostImageRegistry"]
    for region, account in {"us-east-1": "683313688378", "us-east-2": "257758044811", "us-west-2": "246618743249",
                            "eu-west-1": "141502667606", "eu-central-1": "492215442770",
                            "ap-southeast-1": "121021644041", "ap-northeast-1": "354813040037"}.items():
        assert registry[region] == {"account": account}
    # the PyTorch variant: the Deep Learning Containers pytorch-inference image (CPU, py3) of the region
    torch_model = synth.props("ModelChallenger", "AWS::SageMaker::Model")["PrimaryContainer"]
    image = torch_model["Image"]["Fn::Join"][1]
    assert image[0] == {"Fn::FindInMap": ["PytorchImageRegistry", {"Ref": "AWS::Region"}, "account"]}
    assert image[-1] == "/pytorch-inference:2.6.0-cpu-py312"
    assert torch_model["Environment"] == {"MODEL_VERSION": "torch-1", "FEATURE_SET": cfg.feature_set,
                                          "SAGEMAKER_PROGRAM": "inference.py",
                                          "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}
    assert torch_model["ModelDataUrl"] != container["ModelDataUrl"]
    registry = synth.template["Mappings"]["PytorchImageRegistry"]
    for region, account in {"us-east-1": "763104351884", "eu-west-1": "763104351884", "af-south-1": "626614931356",
                            "ap-east-1": "871362719292", "eu-south-1": "692866216735",
                            "me-south-1": "217643126080"}.items():
        assert registry[region] == {"account": account}
    # serverless A/B: one serverless endpoint per variant, each config with that variant alone (weight 1; the A/B
    # weights are MODEL_VARIANTS', applied by the sticky assignment)
    for suffix, name, model in (("", "primary", "Model"), ("Challenger", "challenger", "ModelChallenger")):
        config = synth.props(f"EndpointConfig{suffix}", "AWS::SageMaker::EndpointConfig")
        assert config["ProductionVariants"] == [{
            "VariantName": name, "InitialVariantWeight": 1, "ModelName": {"Fn::GetAtt": [model, "ModelName"]},
            "ServerlessConfig": {"MaxConcurrency": cfg.endpoint.serverless_max_concurrency,
                                 "MemorySizeInMB": cfg.endpoint.serverless_memory_mb}}]
        assert synth.props(f"Endpoint{suffix}", "AWS::SageMaker::Endpoint") == {
            "EndpointConfigName": {"Fn::GetAtt": [f"EndpointConfig{suffix}", "EndpointConfigName"]}}


def test_sagemaker_role_least_privilege(synth):
    statements = synth.policy_statements("ModelRole")
    by_sid = {s.get("Sid"): s for s in statements}
    for sid, repository in (("PullXgboostImage", "sagemaker-xgboost"), ("PullPytorchImage", "pytorch-inference")):
        assert by_sid[sid]["Action"] == [
            "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        assert f"repository/{repository}" in json.dumps(by_sid[sid]["Resource"])
    [read] = [s for s in statements if s["Action"] == "s3:GetObject" and "Sid" not in s]
    keys = [synth.props(m, "AWS::SageMaker::Model")["PrimaryContainer"]["ModelDataUrl"]["Fn::Sub"].rsplit("/")[-1]
            for m in ("Model", "ModelChallenger")]
    resources = read["Resource"] if isinstance(read["Resource"], list) else [read["Resource"]]
    # each artifact object only, not the bucket
    assert sorted(r["Fn::Join"][1][-1] for r in resources) == sorted(f"/{k}" for k in keys)
    promoted = json.dumps(by_sid["ReadPromotedModels"]["Resource"])   # promoted versions: models/ prefix only
    assert synth.logical_id("ArtifactsBucket", "AWS::S3::Bucket") in promoted and promoted.endswith('"/models/*"]]}')
    assert synth.resources["Model"]["DependsOn"]   # the role's policy exists before the model


def test_schedules(synth):
    cfg = synth.config
    for rule, function_id, expression in (("RetrainBatchSizeSchedule", "RetrainBatchSizeFunction",
                                           cfg.retrain_schedule),
                                          ("MonitorDriftSchedule", "MonitorDriftFunction", cfg.drift_schedule)):
        props = synth.props(rule, "AWS::Events::Rule")
        assert props["ScheduleExpression"] == expression == "rate(1 hour)"
        assert props["State"] == "ENABLED"
        [target] = props["Targets"]
        function_lid = synth.logical_id(function_id, "AWS::Lambda::Function")
        assert target["Arn"] == {"Fn::GetAtt": [function_lid, "Arn"]}
        synth.assertions.has_resource_properties("AWS::Lambda::Permission", {
            "Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com",
            "FunctionName": {"Fn::GetAtt": [function_lid, "Arn"]},
            "SourceArn": {"Fn::GetAtt": [synth.logical_id(rule, "AWS::Events::Rule"), "Arn"]}})


def _actions(statement: dict) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def _resources(statement: dict) -> list:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def _all_actions(statements: list[dict]) -> set[str]:
    return set().union(*(_actions(s) for s in statements))


def test_function_roles_least_privilege(synth):
    statements = {f: synth.policy_statements(f.removesuffix("Function") + "Role") for f in FUNCTION_HANDLERS}
    for function_id, found in statements.items():
        actions = _all_actions(found)
        assert not {a for a in actions if a == "*" or a.endswith(":*")}, function_id
        assert {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments"} <= actions, function_id
    for role in synth.of_type("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]        # no AWS managed policies
    api = _all_actions(statements["ApiFunction"])
    assert {"kinesis:PutRecords", "sagemaker:InvokeEndpoint", "sqs:GetQueueAttributes"} <= api
    assert not {a for a in api if a.startswith(("states:", "lambda:"))}
    [registry] = [s for s in statements["ApiFunction"] if s.get("Sid") == "ReadModelRegistry"]   # GET /models
    assert {a for a in api if a.startswith("s3:")} == _actions(registry) == {"s3:GetObject"}
    assert json.dumps(registry["Resource"]).endswith('/models/manifest.json"]]}')
    process = _all_actions(statements["ProcessStreamFunction"])
    assert {"kinesis:GetRecords", "states:StartExecution", "sqs:SendMessage", "s3:PutObject"} <= process
    assert "sagemaker:InvokeEndpoint" not in process
    assert {"sagemaker:InvokeEndpoint", "s3:GetObject"} <= _all_actions(statements["InvokeModelFunction"])
    invoke = statements["InvokeModelFunction"]
    [large] = [s for s in invoke if s.get("Sid") == "WriteLargePredictions"]
    assert _actions(large) == {"s3:PutObject"} and "predictions/*" in json.dumps(large["Resource"])
    store = _all_actions(statements["StorePredictionsFunction"])
    assert not {a for a in store if a.startswith(("sagemaker:", "kinesis:", "states:"))}
    assert {a for a in store if a.startswith("s3:")} == {"s3:GetObject"}  # large predictions only
    assert not {a for a in _all_actions(statements["RecordCostFunction"])
                if a.startswith(("sagemaker:", "s3:", "kinesis:", "states:"))}
    [tune] = [s for s in statements["RetrainBatchSizeFunction"] if s.get("Sid") == "TuneStreamMapping"]
    assert _actions(tune) == {"lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping"}
    assert {"Ref": synth.logical_id("EventsStreamMapping", "AWS::Lambda::EventSourceMapping")} in \
        tune["Resource"]["Fn::Join"][1]
    drift = _all_actions(statements["MonitorDriftFunction"])
    assert {"s3:GetObject", "s3:ListBucket"} <= drift  # the batch journals are its sample
    assert not {a for a in drift if a.startswith("dynamodb:") and "Write" in a}
    [listing] = [s for s in statements["MonitorDriftFunction"] if s.get("Sid") == "ListBatchJournals"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["journal/*"]}}
    # process_stream keeps no ledger of accepted events: it only writes rejected records to the events table
    events_arn = {"Fn::GetAtt": [synth.logical_id("EventsTable", "AWS::DynamoDB::Table"), "Arn"]}
    on_events = {a for s in statements["ProcessStreamFunction"] if events_arn in _resources(s) for a in _actions(s)}
    assert on_events and not {a for a in on_events if "Get" in a or "Query" in a or "Scan" in a}


def test_only_api_reads_the_predictions_index(synth):
    """Query permission on exactly the by_user index, no index wildcard anywhere."""
    index_resources = []
    for policy in synth.of_type("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            text = json.dumps(statement["Resource"])
            assert "/index/*" not in text
            if "/index/" in text:
                index_resources.append(policy["Properties"]["Roles"])
    assert index_resources == [[{"Ref": synth.logical_id("ApiRole", "AWS::IAM::Role")}]]


def test_outputs(synth):
    outputs = synth.template["Outputs"]
    for name in ("ApiUrl", "EventsStreamName", "EndpointName", "StateMachineArn", "EventSourceMappingId",
                 "EventsTableName", "PredictionsTableName", "FeaturesTableName", "CostTableName", "StateTableName",
                 "ArtifactsBucketName", "StreamDlqUrl", "QuarantineQueueUrl"):
        assert name in outputs, name
    url = outputs["ApiUrl"]["Value"]["Fn::Join"][1]
    assert url[0] == "https://" and {"Ref": synth.logical_id("HttpApi", "AWS::ApiGatewayV2::Api")} in url
    synth.assertions.has_output("EndpointName", {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}})
    synth.assertions.has_output("StateMachineArn", {"Value": {"Ref": Match.string_like_regexp(
        "^InferenceStateMachine")}})


def test_removal_policies(synth):
    """Data is retained by default (removalPolicy "retain"); the stream (24 h of records, billed per shard hour)
    and the alarm topic key always go with the stack."""
    assert synth.config.removal_policy == "retain"
    for prefix, resource_type in (("EventsTable", "AWS::DynamoDB::Table"), ("QuarantineQueue", "AWS::SQS::Queue"),
                                  ("ArtifactsBucket", "AWS::S3::Bucket")):
        assert synth.resources[synth.logical_id(prefix, resource_type)]["DeletionPolicy"] == "Retain", prefix
    assert synth.resources[synth.logical_id("EventsStream", "AWS::Kinesis::Stream")]["DeletionPolicy"] == "Delete"
    key = synth.resources[synth.logical_id("AlarmTopicKey", "AWS::KMS::Key")]
    assert key["DeletionPolicy"] == "Delete" and key["Properties"]["PendingWindowInDays"] == 7
