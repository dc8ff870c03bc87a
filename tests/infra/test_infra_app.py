"""app.py as a program, cdk.json, the ML function image files, and the stack-level options."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_cdk_json(cdk_json):
    assert cdk_json["app"].endswith("app.py")
    assert cdk_json["notices"] is False
    assert cdk_json["context"]["cli-telemetry"] is False
    assert cdk_json["context"]["@aws-cdk/core:validateAgainstDefaultRules"] is True


def test_app_fails_clearly_without_the_model_artifact(tmp_path):
    """`python app.py` with a missing artifact exits 1 and tells the user to run `make model`. The override
    comes through CDK_CONTEXT_JSON, the way the CDK CLI passes `-c` values: they win over cdk.json."""
    env = dict(os.environ, CDK_OUTDIR=str(tmp_path / "out"), JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
               CDK_CONTEXT_JSON=json.dumps({"modelArtifact": "model/artifacts/missing-for-test.tar.gz"}))
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "model/artifacts/missing-for-test.tar.gz not found" in result.stderr
    assert "run `make model` first" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_bad_context_is_reported_before_synthesis(placeholder_artifact):
    from app import build_app

    with pytest.raises(ConfigError, match="shardCount: 0 is out of range"):
        build_app(overrides={"modelArtifact": str(placeholder_artifact), "shardCount": 0})
    with pytest.raises(ConfigError, match="unknown setting"):
        build_app(context={"shardcount": 2})


def test_two_variants_and_instance_endpoints(placeholder_artifact, tmp_path):
    """A/B: each variant with its weight; a variant with its own artifact gets its own model."""
    from app import build_app

    other = tmp_path / "other" / "model.tar.gz"
    other.parent.mkdir()
    other.write_bytes(placeholder_artifact.read_bytes() + b"\0")
    app, stack = build_app(outdir=str(tmp_path / "out"), overrides={
        "modelArtifact": str(placeholder_artifact),
        "endpoint": {"mode": "instance", "instanceType": "ml.m5.large", "instanceCount": 2},
        "variants": [{"name": "primary", "weight": 0.9},
                     {"name": "challenger", "weight": 0.1, "modelArtifact": str(other)}]})
    from aws_cdk.assertions import Template

    template = Template.from_stack(stack).to_json()
    [config] = [r["Properties"] for r in template["Resources"].values()
                if r["Type"] == "AWS::SageMaker::EndpointConfig"]
    assert config["ProductionVariants"] == [
        {"InitialInstanceCount": 2, "InitialVariantWeight": 0.9, "InstanceType": "ml.m5.large",
         "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]}, "VariantName": "primary"},
        {"InitialInstanceCount": 2, "InitialVariantWeight": 0.1, "InstanceType": "ml.m5.large",
         "ModelName": {"Fn::GetAtt": ["ModelChallenger", "ModelName"]}, "VariantName": "challenger"}]
    assert len([r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::Endpoint"]) == 1
    alarms = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert any(a.startswith("AlarmModelLatencyChallenger") for a in alarms)
    # both variants on the one endpoint: invoke_model addresses them with TargetVariant
    [function] = [r["Properties"] for lid, r in template["Resources"].items()
                  if r["Type"] == "AWS::Lambda::Function" and lid.startswith("InvokeModelFunction")]
    parts = function["Environment"]["Variables"]["MODEL_VARIANTS"]["Fn::Join"][1]
    assert [p for p in parts if not isinstance(p, str)] == [{"Fn::GetAtt": ["Endpoint", "EndpointName"]}] * 2


def test_data_capture_in_instance_mode(placeholder_artifact, tmp_path):
    """Instance endpoints can capture requests and responses to the artifacts bucket (serverless cannot: the config
    refuses it, tests/infra/test_infra_config.py)."""
    from app import build_app
    from aws_cdk.assertions import Template

    _, stack = build_app(outdir=str(tmp_path / "out"), overrides={
        "modelArtifact": str(placeholder_artifact),
        "endpoint": {"mode": "instance", "instanceType": "ml.m5.large", "dataCapturePercent": 20}})
    template = Template.from_stack(stack).to_json()
    [config] = [r["Properties"] for r in template["Resources"].values()
                if r["Type"] == "AWS::SageMaker::EndpointConfig"]
    capture = config["DataCaptureConfig"]
    assert (capture["EnableCapture"], capture["InitialSamplingPercentage"]) == (True, 20)
    assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert capture["DestinationS3Uri"]["Fn::Join"][1][-1] == "/datacapture"


def test_dockerfile_and_ml_requirements():
    dockerfile = (ROOT / "functions" / "Dockerfile").read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.12$", dockerfile, re.M)   # Amazon Linux 2023
    assert "pip install --no-cache-dir --only-binary=:all: -r ${LAMBDA_TASK_ROOT}/requirements-ml.txt" in dockerfile
    for package in ("pipeline", "retrain_batch_size", "monitor_drift"):
        assert f"COPY {package}/ ${{LAMBDA_TASK_ROOT}}/{package}/" in dockerfile

    def pins(path: Path) -> dict[str, str]:
        found = {}
        for line in path.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#]+)", line.strip())
            if match:
                found[match.group(1).lower()] = match.group(3)
        return found

    ml = pins(ROOT / "functions" / "requirements-ml.txt")
    project = pins(ROOT / "requirements.txt")
    assert set(ml) == {"aws-lambda-powertools", "numpy", "scikit-learn", "xgboost"}
    assert {name: project[name] for name in ml} == ml       # the versions the project is tested with
    assert ml["xgboost"] == "3.0.5"                        # = SageMaker XGBoost container 3.0-5
