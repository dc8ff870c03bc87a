"""infra/image_registries.json: the region -> registry account maps of the model images, generated from AWS's own
image map as shipped in the SageMaker SDK (sagemaker-core image_uri_config/xgboost.json and pytorch.json) by
scripts/update_image_map.py, and the synth-time region check built on it."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from infra import images
from infra.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_the_file_is_generated_for_the_deployed_versions(cdk_json):
    data = json.loads(images.REGISTRY_FILE.read_text())
    assert data["generated_by"] == "scripts/update_image_map.py" and data["source"]["package"] == "sagemaker-core"
    context = cdk_json["context"]
    assert images.VERSIONS == {"xgboost": context["xgboostImageTag"],
                               "pytorch": context["pytorchImageTag"].split("-")[0]} == {"xgboost": "3.0-5",
                                                                                       "pytorch": "2.6.0"}
    assert (images.XGBOOST_REPOSITORY, images.PYTORCH_REPOSITORY) == ("sagemaker-xgboost", "pytorch-inference")
    # sagemaker-core 2.27.0: XGBoost 3.0-5 in 37 regions, PyTorch inference 2.6.0 in 39 (the hand-written table had
    # 29; every one of those kept its account)
    assert len(images.XGBOOST_REGISTRIES) >= 37 and len(images.PYTORCH_REGISTRIES) >= 39
    for region, account in {"us-east-1": "683313688378", "eu-west-1": "141502667606", "cn-north-1": None}.items():
        assert region in images.XGBOOST_REGISTRIES and (account is None or images.XGBOOST_REGISTRIES[region] == account)
    assert images.PYTORCH_REGISTRIES["us-east-1"] == "763104351884"
    assert "py312" in data["pytorch"]["py_versions"] and "cpu" in data["pytorch"]["processors"]


def test_the_file_is_in_step_with_the_installed_sagemaker_core():
    """When sagemaker-core is installed (requirements-dev.txt), the committed file is exactly what it generates."""
    try:
        installed = metadata.version("sagemaker-core")
    except metadata.PackageNotFoundError:
        pytest.skip("sagemaker-core is not installed: the map cannot be compared with it here")
    result = subprocess.run([sys.executable, "scripts/update_image_map.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, (f"infra/image_registries.json is not what sagemaker-core {installed} gives: run "
                                    f"scripts/update_image_map.py\n{result.stdout}{result.stderr}")


def test_the_generator_reads_a_wheel_layout(tmp_path, cdk_json):
    """scripts/update_image_map.py on a minimal sagemaker-core layout (no package install needed)."""
    from scripts import update_image_map as generator

    config = tmp_path / "sagemaker" / "core" / "image_uri_config"
    config.mkdir(parents=True)
    (tmp_path / "sagemaker_core-9.9.9.dist-info").mkdir()
    (config / "xgboost.json").write_text(json.dumps({"inference": {"versions": {"3.0-5": {
        "repository": "sagemaker-xgboost", "registries": {"us-east-1": "683313688378", "xx-new-1": "123"}}}}}))
    (config / "pytorch.json").write_text(json.dumps({"inference": {"processors": ["cpu", "gpu"], "versions": {
        "2.6.0": {"py_versions": ["py312"], "repository": "pytorch-inference",
                  "registries": {"us-east-1": "763104351884"}}}}}))
    data = generator.build(generator.Source(tmp_path), generator.deployed_versions(cdk_json["context"]))
    assert data["source"]["version"] == "9.9.9"
    assert data["xgboost"]["registries"] == {"us-east-1": "683313688378", "xx-new-1": "123"}
    assert data["pytorch"]["processors"] == ["cpu", "gpu"]
    with pytest.raises(SystemExit, match="has no xgboost inference image 3.2-0"):
        generator.build(generator.Source(tmp_path), {"xgboost": "3.2-0", "pytorch": "2.6.0"})


def test_the_template_mappings_are_the_file(synth):
    mappings = synth.template["Mappings"]
    assert mappings["XgboostImageRegistry"] == {r: {"account": a} for r, a in images.XGBOOST_REGISTRIES.items()}
    assert mappings["PytorchImageRegistry"] == {r: {"account": a} for r, a in images.PYTORCH_REGISTRIES.items()}


def test_an_unsupported_concrete_region_fails_at_synth(placeholder_artifact):
    """With a concrete region (cdk.json "region"), a region without the image fails before synthesis, saying which
    regions have it; environment-agnostic stacks keep the mapping (Fn::FindInMap fails at deploy)."""
    from app import build_app

    with pytest.raises(ConfigError, match=r"region xx-nowhere-1: AWS's image map \(sagemaker-core [\d.]+\) has no "
                                          r"xgboost 3.0-5 image \(sagemaker-xgboost\) in xx-nowhere-1; it has 3\d "
                                          r"regions: af-south-1, .*Deploy to one of them"):
        build_app(overrides={"modelArtifact": str(placeholder_artifact), "region": "xx-nowhere-1"})
    # me-west-1 has the PyTorch image but not the XGBoost one
    assert "me-west-1" in images.PYTORCH_REGISTRIES and "me-west-1" not in images.XGBOOST_REGISTRIES
    with pytest.raises(ConfigError, match="region me-west-1: .* no xgboost 3.0-5 image"):
        build_app(overrides={"modelArtifact": str(placeholder_artifact), "region": "me-west-1"})
    with pytest.raises(ConfigError, match="region: 'Mars' is not valid"):
        build_app(overrides={"modelArtifact": str(placeholder_artifact), "region": "Mars"})


def test_a_supported_concrete_region_synthesizes(placeholder_artifact, tmp_path):
    from app import build_app, cdk_json_context

    app, stack = build_app(outdir=str(tmp_path), overrides={"modelArtifact": str(placeholder_artifact),
                                                            "region": "eu-west-1"})
    assert stack.region == "eu-west-1"
    # and the stack's own check, for a stack built without the config-level check
    from infra.stack import RealtimeInferenceStack
    import aws_cdk as cdk

    with pytest.raises(ConfigError, match="region xx-nowhere-1"):
        RealtimeInferenceStack(cdk.App(context=cdk_json_context()), "Direct", config=stack.config,
                               env=cdk.Environment(region="xx-nowhere-1"))


def test_image_uri_for_promotions():
    assert images.image_uri("pytorch", "eu-west-1", "2.6.0-cpu-py312") == \
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"
    assert images.image_uri("xgboost", "cn-north-1", "3.0-5").endswith(".dkr.ecr.cn-north-1.amazonaws.com.cn/"
                                                                        "sagemaker-xgboost:3.0-5")
    with pytest.raises(ValueError, match="no xgboost 3.0-5 image"):
        images.image_uri("xgboost", "xx-nowhere-1", "3.0-5")
