"""Deploy readiness: the synthesized template (cdk.json's default, serverless A/B) and its instance-mode variant
checked against the AWS limits the local cloud does not enforce. Each test names the AWS document it encodes."""
from __future__ import annotations

import copy
import json

import pytest

from infra import express_budget

EXPRESS_LIMIT = express_budget.EXPRESS_MAX_SECONDS


def _definition(synth) -> dict:
    return json.loads(synth.props("InferenceStateMachine", "AWS::StepFunctions::StateMachine")["DefinitionString"])


def _task_function_timeouts(synth) -> dict[str, int]:
    return {f: synth.function(f)["Timeout"] for f in express_budget.TASK_FUNCTIONS.values()}


# -- Step Functions: the Express 5-minute budget ---------------------------------------------------------------
def test_every_task_state_has_a_timeout(synth):
    """AWS Step Functions Developer Guide, "Task workflow state" (TimeoutSeconds; default 99999999 s,
    https://docs.aws.amazon.com/step-functions/latest/dg/state-task.html): without it one stuck attempt could use the
    whole Express execution."""
    tasks = {n: s for n, s in _definition(synth)["States"].items() if s["Type"] == "Task"}
    assert set(tasks) == {"InvokeModel", "StorePredictions", "RecordCost", "Quarantine"}
    assert all(isinstance(s.get("TimeoutSeconds"), int) and s["TimeoutSeconds"] > 0 for s in tasks.values())


def test_express_worst_case_is_under_five_minutes(synth):
    """AWS Step Functions Developer Guide, "Step Functions service quotas"
    (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html): an Express execution lasts at most 5
    minutes, and a timed-out one runs no Catch (its batch would be neither stored nor quarantined). Worst case per
    state = attempts (1 + every retrier's MaxAttempts) x the longest attempt (TimeoutSeconds, or the function's
    Timeout from the template + 10 s of Lambda init, "Lambda execution environment lifecycle",
    https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html) + backoff (IntervalSeconds x
    BackoffRate^n, capped by MaxDelaySeconds; "Handling errors in Step Functions workflows",
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html), summed along the longest
    path through Next and Catch (Quarantine included)."""
    seconds, path = express_budget.worst_case(_definition(synth), _task_function_timeouts(synth))
    breakdown = ", ".join(f"{b.name} {b.attempts} x {b.attempt_seconds:.0f} s + {b.backoff_seconds:.0f} s"
                          for b in path if b.seconds)
    assert seconds < EXPRESS_LIMIT, f"worst case {seconds:.0f} s >= {EXPRESS_LIMIT} s: {breakdown}"
    # the numbers as designed (statemachines/inference.asl.json, cdk.json functions): 283 s
    assert [b.name for b in path] == ["InvokeModel", "StorePredictions", "RecordCost", "Done"]
    assert seconds == 2 * 80 + 1 + 2 * 40 + 1 + 2 * 20 + 1 == 283
    # the quarantine path is shorter: InvokeModel + StorePredictions + Quarantine (4 attempts x 5 s + 1 + 2 + 4 s)
    quarantine = express_budget.state_budget("Quarantine", _definition(synth)["States"]["Quarantine"])
    assert quarantine.seconds == 27 and 2 * 80 + 1 + 2 * 40 + 1 + quarantine.seconds < seconds


def test_each_task_function_fits_in_its_state_timeout(synth):
    """A state timeout shorter than the function's timeout plus its init phase (10 s, "Lambda execution environment
    lifecycle", https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html) would cut a healthy
    cold invocation short; config validation refuses it (infra/config.py)."""
    assert express_budget.function_timeout_problems(_definition(synth), _task_function_timeouts(synth)) == []
    states = _definition(synth)["States"]
    for state, function in express_budget.TASK_FUNCTIONS.items():
        assert states[state]["TimeoutSeconds"] == synth.function(function)["Timeout"] + 10, state


def test_the_budget_catches_the_old_definition(synth):
    """Evidence: the definition before this budget (model and Lambda retriers of 3 attempts each, 120 s functions,
    no TimeoutSeconds) had no finite worst case, and with a 130 s state timeout it would have been 17 minutes."""
    old = copy.deepcopy(_definition(synth))
    invoke = old["States"]["InvokeModel"]
    invoke["Retry"] = [{"ErrorEquals": ["ModelThrottledError", "ModelUnavailableError"], "IntervalSeconds": 1,
                        "BackoffRate": 2, "MaxAttempts": 3, "MaxDelaySeconds": 8, "JitterStrategy": "FULL"},
                       {"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 1, "BackoffRate": 2,
                        "MaxAttempts": 3}]
    del invoke["TimeoutSeconds"]
    with pytest.raises(ValueError, match="InvokeModel has no TimeoutSeconds"):
        express_budget.worst_case(old)
    invoke["TimeoutSeconds"] = 130
    seconds, _ = express_budget.worst_case(old, {"InvokeModelFunction": 120, "StorePredictionsFunction": 60,
                                                 "RecordCostFunction": 30})
    assert seconds > EXPRESS_LIMIT and 7 * 130 <= seconds


def test_retry_delays_follow_backoff_and_max_delay():
    assert express_budget.retry_delays({"IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 5,
                                        "MaxDelaySeconds": 4}) == [1, 2, 4, 4, 4]
    assert express_budget.retry_delays({"IntervalSeconds": 2, "BackoffRate": 1.5, "MaxAttempts": 3}) == [2, 3, 4.5]


def test_one_model_call_fits_in_the_invoke_model_function(synth):
    """One InvokeEndpoint call may take up to 60 s (SageMaker Runtime API Reference, "InvokeEndpoint",
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html); the client's read
    timeout is just above that and boto3 makes one attempt, so a slow model surfaces as ModelUnavailableError (retried
    by the state machine) before the function itself times out (Sandbox.Timedout, which goes to quarantine)."""
    from pipeline import model_client

    timeout = synth.function("InvokeModelFunction")["Timeout"]
    assert model_client.RUNTIME_CONFIG.retries == {"mode": "standard", "total_max_attempts": 1}
    assert 60 < model_client.READ_TIMEOUT_SECONDS
    assert model_client.READ_TIMEOUT_SECONDS + model_client.CONNECT_TIMEOUT_SECONDS < timeout


# -- the instance-mode variant of the stack --------------------------------------------------------------------
INSTANCE_ENDPOINT = {"mode": "instance", "instanceType": "ml.m5.large", "instanceCount": 1, "dataCapturePercent": 10}


@pytest.fixture(scope="module")
def instance_template(tmp_path_factory, placeholder_artifact) -> dict:
    """cdk.json with endpoint.mode instance (and data capture on), synthesized with the cdk-nag checks."""
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out.instance")
    app, stack = build_app(outdir=str(outdir), overrides={"modelArtifact": str(placeholder_artifact),
                                                          "endpoint": INSTANCE_ENDPOINT})
    app.synth()
    return json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())


def _of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == resource_type}


def _env(template: dict, prefix: str) -> dict:
    [function] = [r for lid, r in _of_type(template, "AWS::Lambda::Function").items() if lid.startswith(prefix)]
    return function["Properties"]["Environment"]["Variables"]


# -- SageMaker --------------------------------------------------------------------------------------------------
def test_serverless_endpoint_configs_have_one_variant_and_no_data_capture(synth):
    """SageMaker Developer Guide, "Deploy models with Amazon SageMaker Serverless Inference", feature exclusions
    (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html): no multiple production variants, no
    data capture; ProductionVariantServerlessConfig (https://docs.aws.amazon.com/sagemaker/latest/APIReference/
    API_ProductionVariantServerlessConfig.html): MemorySizeInMB 1024-6144 in 1 GB steps, MaxConcurrency 1-200."""
    configs = _of_type(synth.template, "AWS::SageMaker::EndpointConfig")
    assert len(configs) == len(synth.config.variants) == 2          # one serverless endpoint per A/B variant
    for lid, config in configs.items():
        props = config["Properties"]
        [variant] = props["ProductionVariants"]
        serverless = variant["ServerlessConfig"]
        assert serverless["MemorySizeInMB"] in range(1024, 6145, 1024), lid
        assert 1 <= serverless["MaxConcurrency"] <= 200, lid
        assert "DataCaptureConfig" not in props and "InstanceType" not in variant, lid
    endpoints = _of_type(synth.template, "AWS::SageMaker::Endpoint")
    assert sorted(e["Properties"]["EndpointConfigName"]["Fn::GetAtt"][0] for e in endpoints.values()) == sorted(
        configs)


def test_instance_endpoint_holds_the_variants_with_target_variant(instance_template):
    """SageMaker API Reference, CreateEndpointConfig (https://docs.aws.amazon.com/sagemaker/latest/APIReference/
    API_CreateEndpointConfig.html): 1-10 production variants, each with InstanceType and InitialInstanceCount; data
    capture (DataCaptureConfig) is allowed on real-time endpoints."""
    [config] = _of_type(instance_template, "AWS::SageMaker::EndpointConfig").values()
    variants = config["Properties"]["ProductionVariants"]
    assert [v["VariantName"] for v in variants] == ["primary", "challenger"] and len(variants) <= 10
    assert all(v["InstanceType"] == "ml.m5.large" and v["InitialInstanceCount"] == 1 and "ServerlessConfig" not in v
               for v in variants)
    assert [v["InitialVariantWeight"] for v in variants] == [0.8, 0.2]
    assert config["Properties"]["DataCaptureConfig"]["InitialSamplingPercentage"] == 10
    assert len(_of_type(instance_template, "AWS::SageMaker::Endpoint")) == 1
    # both variants name the one endpoint: invoke_model addresses them with TargetVariant (variants.targets)
    parts = _env(instance_template, "InvokeModelFunction")["MODEL_VARIANTS"]["Fn::Join"][1]
    assert [p for p in parts if not isinstance(p, str)] == [{"Fn::GetAtt": ["Endpoint", "EndpointName"]}] * 2


@pytest.mark.parametrize("mode", ["serverless", "instance"])
def test_invoke_permission_and_latency_alarm_for_every_endpoint(synth, instance_template, mode):
    template = synth.template if mode == "serverless" else instance_template
    endpoints = set(_of_type(template, "AWS::SageMaker::Endpoint"))
    granted = set()
    for policy in _of_type(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == "InvokeEndpoint":
                resources = statement["Resource"] if isinstance(statement["Resource"], list) else [
                    statement["Resource"]]
                granted |= {r["Ref"] for r in resources}
    assert granted == endpoints
    alarmed = set()
    for lid, alarm in _of_type(template, "AWS::CloudWatch::Alarm").items():
        if lid.startswith("AlarmModelLatency"):
            alarmed |= {d["Value"]["Fn::GetAtt"][0] for d in alarm["Properties"]["Dimensions"]
                        if d["Name"] == "EndpointName"}
    assert alarmed == endpoints


# -- Lambda -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["serverless", "instance"])
def test_runtime_is_python312_everywhere(synth, instance_template, mode):
    """AWS Lambda Developer Guide, "Lambda runtimes" (https://docs.aws.amazon.com/lambda/latest/dg/
    lambda-runtimes.html): python3.12 is an Amazon Linux 2023 runtime (the ML wheels need glibc >= 2.28; Amazon
    Linux 2 has 2.26). The container-image functions are built on public.ecr.aws/lambda/python:3.12, and their
    requirements resolve to binary wheels for it (tests/infra/test_ml_wheels.py, against the package index)."""
    from infra import runtime

    template = synth.template if mode == "serverless" else instance_template
    functions = _of_type(template, "AWS::Lambda::Function").values()
    zips = [f["Properties"] for f in functions if f["Properties"].get("PackageType") != "Image"]
    images = [f["Properties"] for f in functions if f["Properties"].get("PackageType") == "Image"]
    assert len(zips) == 5 and {f["Runtime"] for f in zips} == {"python3.12"}
    assert len(images) == 2
    dockerfile = (express_budget.ROOT / "functions" / "Dockerfile").read_text()
    assert f"FROM {runtime.ML_IMAGE_BASE}\n" in dockerfile and runtime.ML_IMAGE_BASE.endswith(":3.12")
    assert "--only-binary=:all:" in dockerfile


def test_powertools_layer_is_the_pinned_release(synth):
    """Powertools for AWS Lambda (Python), "Lambda Layer": each release's layer ARN is published as the public SSM
    parameter /aws/service/powertools/python/{arch}/{python}/{release}; the template reads the one of the
    requirements.txt pin for python3.12 x86_64 (the local venv runs that same pin)."""
    from infra import runtime

    release = runtime.powertools_release()
    layers = {json.dumps(f["Properties"]["Layers"]) for f in _of_type(synth.template, "AWS::Lambda::Function").values()
              if "Layers" in f["Properties"]}
    [layer] = layers
    parameter = synth.template["Parameters"][json.loads(layer)[0]["Ref"]]
    assert parameter == {"Type": "AWS::SSM::Parameter::Value<String>",
                         "Default": f"/aws/service/powertools/python/x86_64/python3.12/{release}"}


# Upper bounds of what CloudFormation fills in (names it generates: "<stack>-<logical id>-<13 random>", capped by the
# service's limit), per referenced resource type; used to bound the environment before deploy.
def _bound(value, template: dict, stack_name: str) -> int:
    if isinstance(value, str):
        return len(value)
    if "Fn::Join" in value:
        return sum(_bound(p, template, stack_name) for p in value["Fn::Join"][1])
    if "Fn::Sub" in value:
        import re
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        return len(re.sub(r"\$\{[^}]+\}", "", text)) + 20 * len(re.findall(r"\$\{[^}]+\}", text))
    if "Fn::GetAtt" in value:
        return 63 if value["Fn::GetAtt"][1] == "EndpointName" else 256
    if "Ref" in value:
        resource = template["Resources"].get(value["Ref"])
        if resource is None:                                 # a pseudo parameter
            return 20
        generated = len(stack_name) + len(value["Ref"]) + 15
        return {"AWS::DynamoDB::Table": min(255, generated), "AWS::Kinesis::Stream": min(128, generated),
                "AWS::S3::Bucket": 63, "AWS::SQS::Queue": 60 + min(80, generated),
                "AWS::StepFunctions::StateMachine": 60 + 80, "AWS::Lambda::EventSourceMapping": 36,
                "AWS::SageMaker::Endpoint": 256}.get(resource["Type"], 256)
    return len(json.dumps(value))


@pytest.mark.parametrize("mode", ["serverless", "instance"])
def test_function_environment_fits_in_4_kb(synth, instance_template, mode):
    """AWS Lambda Developer Guide, "Lambda quotas" (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-
    limits.html): 4 KB for all of a function's environment variables. Bounded before deploy: every value
    CloudFormation fills in counted at the longest name or URL it can generate (MODEL_VARIANTS grows by one
    endpoint name per variant)."""
    template = synth.template if mode == "serverless" else instance_template
    stack_name = synth.config.stack_name
    for lid, function in _of_type(template, "AWS::Lambda::Function").items():
        env = function["Properties"]["Environment"]["Variables"]
        size = sum(len(k) + _bound(v, template, stack_name) for k, v in env.items())
        assert size < 4096, f"{lid}: environment up to {size} bytes"


# -- Step Functions ---------------------------------------------------------------------------------------------
def test_a_timed_out_execution_is_alarmed(synth):
    """A timed-out Express execution runs no Catch (AWS Step Functions Developer Guide, "Step Functions service
    quotas", https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html; "Handling errors in Step
    Functions workflows": States.Timeout of the execution is not caught): AWS/States ExecutionsTimedOut is alarmed."""
    alarms = [a["Properties"] for lid, a in _of_type(synth.template, "AWS::CloudWatch::Alarm").items()
              if lid.startswith("AlarmStateMachineTimedOut")]
    assert [(a["Namespace"], a["MetricName"], a["Threshold"]) for a in alarms] == [
        ("AWS/States", "ExecutionsTimedOut", 1)]


@pytest.mark.parametrize("mode", ["serverless", "instance"])
def test_the_instance_variant_keeps_the_express_budget(synth, instance_template, mode):
    template = synth.template if mode == "serverless" else instance_template
    [machine] = _of_type(template, "AWS::StepFunctions::StateMachine").values()
    timeouts = {}
    for lid, function in _of_type(template, "AWS::Lambda::Function").items():
        for name in express_budget.TASK_FUNCTIONS.values():
            if lid.startswith(name):
                timeouts[name] = function["Properties"]["Timeout"]
    seconds, _ = express_budget.worst_case(json.loads(machine["Properties"]["DefinitionString"]), timeouts)
    assert seconds < EXPRESS_LIMIT


def test_batch_payloads_outlive_the_quarantine_that_points_to_them(synth):
    """A quarantined batch is a message whose state points to S3 objects (its journal, large predictions); the
    objects must outlive the message. SQS keeps a message at most 14 days (Amazon SQS Developer Guide, "Amazon SQS
    message quotas": message retention 60 s to 1,209,600 s = 14 days,
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html), and the
    lifecycle rules expire journal/, batches/ and predictions/ one day later."""
    queue = synth.of_type("AWS::SQS::Queue")[synth.logical_id("QuarantineQueue", "AWS::SQS::Queue")]
    retention_days = queue["Properties"]["MessageRetentionPeriod"] / 86_400
    assert retention_days <= 14
    bucket = synth.of_type("AWS::S3::Bucket")[synth.logical_id("ArtifactsBucket", "AWS::S3::Bucket")]
    rules = {r.get("Prefix"): r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    for prefix in ("journal/", "batches/", "predictions/"):
        assert rules[prefix]["Status"] == "Enabled"
        assert rules[prefix]["ExpirationInDays"] > retention_days, prefix
