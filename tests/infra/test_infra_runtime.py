"""infra/runtime.py: one Python version for every function, the ML image on the same one, and the public Powertools
layer of exactly the release requirements.txt pins (what the tests and the local cloud run)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra import runtime
from infra.config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_runtime_image_and_wheel_platform_name_one_python():
    """AWS Lambda Developer Guide, "Lambda runtimes" (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html):
    python3.12 runs on Amazon Linux 2023 (glibc 2.34, hence manylinux_2_34); python3.11 container images are Amazon
    Linux 2 (glibc 2.26), too old for the manylinux_2_28 wheels of xgboost 3.x."""
    assert runtime.LAMBDA_RUNTIME == f"python{runtime.PYTHON_VERSION}" == "python3.12"
    dockerfile = (ROOT / "functions" / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)$", dockerfile, re.M) == [runtime.ML_IMAGE_BASE]
    assert runtime.ML_IMAGE_BASE == "public.ecr.aws/lambda/python:3.12"
    assert runtime.ML_WHEEL_PLATFORM == "manylinux_2_34_x86_64"
    # the PyTorch serving image is the same Python (cdk.json pytorchImageTag ...-py312)
    assert Config.from_mapping(__import__("app").cdk_json_context()).pytorch_image_tag.endswith("-py312")


def test_powertools_pin_and_layer_agree():
    """The layer is the pinned release's: Powertools publishes each release's layer ARN as the public SSM parameter
    /aws/service/powertools/python/{arch}/{python}/{release} (Powertools for AWS Lambda (Python) docs, "Lambda
    Layer"; aws-powertools/powertools-lambda-python .github/workflows/update_ssm.yml)."""
    release = runtime.powertools_release()
    assert release == runtime.pinned("aws-lambda-powertools", ROOT / "functions" / "requirements-ml.txt") == "3.37.0"
    assert runtime.ssm_parameter(release) == "/aws/service/powertools/python/x86_64/python3.12/3.37.0"
    assert runtime.layer_name() == "AWSLambdaPowertoolsPythonV3-python312-x86_64"
    import aws_lambda_powertools.shared.version as installed
    assert installed.VERSION == release     # the local venv runs the same release


def test_cdk_json_layer_setting_serves_the_pin(cdk_json):
    value = cdk_json["context"]["powertoolsLayerVersion"]
    assert runtime.check_layer_version(value, runtime.powertools_release()) is None
    assert value == "ssm" or runtime.KNOWN_LAYER_VERSIONS[runtime.powertools_release()] == value


@pytest.mark.parametrize("value,message", [
    (27, "layer version 27 is the public layer of aws-lambda-powertools 3.23.0, but requirements.txt pins 3.37.0"),
    (99, "layer version 99 is not a verified layer of aws-lambda-powertools 3.37.0"),
    ("latest", "expected an integer"),
])
def test_a_layer_version_of_another_release_is_refused(cdk_json, value, message):
    context = dict(cdk_json["context"], powertoolsLayerVersion=value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_mapping(context)


def test_a_verified_layer_version_is_accepted_for_its_release(monkeypatch):
    assert runtime.check_layer_version(27, "3.23.0") is None
    monkeypatch.setitem(runtime.KNOWN_LAYER_VERSIONS, runtime.powertools_release(), 41)
    assert runtime.check_layer_version(41, runtime.powertools_release()) is None


def test_a_numeric_layer_version_names_the_layer_directly(placeholder_artifact, tmp_path, monkeypatch):
    from app import build_app
    from aws_cdk.assertions import Template

    monkeypatch.setitem(runtime.KNOWN_LAYER_VERSIONS, runtime.powertools_release(), 41)
    _, stack = build_app(outdir=str(tmp_path), overrides={"modelArtifact": str(placeholder_artifact),
                                                          "powertoolsLayerVersion": 41})
    template = Template.from_stack(stack).to_json()
    functions = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                 and r["Properties"].get("Runtime")]
    assert functions and all(f["Runtime"] == "python3.12" for f in functions)
    [layer] = {json_text(f["Layers"]) for f in functions}
    assert layer.endswith(':017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:41"]]}]')
    assert not any(p.startswith("SsmParameterValueawsservicepowertools") for p in template.get("Parameters", {}))


def json_text(value) -> str:
    import json
    return json.dumps(value, sort_keys=True)
