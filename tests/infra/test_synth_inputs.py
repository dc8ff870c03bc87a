"""Config that cannot lie: the model artifacts are checked against featureSet at synth, `-c` overrides reach the
synth (make CDK_CONTEXT="..."), and a cdk.out records what it was made from so a stale or mismatched one is
refused (infra/synth_inputs.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from synthkit import ROOT, write_placeholder_artifact

from infra import synth_inputs
from infra.config import ConfigError

ONE_VARIANT = [{"name": "primary", "weight": 1.0}]


def test_a_model_trained_on_another_feature_set_fails_synth(placeholder_artifact):
    from app import build_app

    with pytest.raises(ConfigError, match=r"featureSet is v2, but the xgboost model artifact .* was trained on "
                                          r"feature set v1: train one for v2"):
        build_app(overrides={"modelArtifact": str(placeholder_artifact), "featureSet": "v2",
                             "variants": ONE_VARIANT})


def test_a_model_of_the_deployed_feature_set_builds(tmp_path):
    from app import build_app

    v2 = write_placeholder_artifact(tmp_path / "v2" / "model.tar.gz", feature_set="v2")
    _, stack = build_app(outdir=str(tmp_path / "out"), overrides={"modelArtifact": str(v2), "featureSet": "v2",
                                                                  "variants": ONE_VARIANT})
    assert stack.config.feature_set == "v2"


def test_a_model_of_another_kind_fails_synth(placeholder_artifact):
    from app import build_app

    torch_artifact = str(ROOT / "model" / "artifacts" / "pytorch" / "model.tar.gz")
    with pytest.raises(ConfigError, match="is a pytorch model, but the variant serving it is of kind xgboost"):
        build_app(overrides={"modelArtifact": torch_artifact, "variants": ONE_VARIANT})


def test_app_takes_cdk_style_context_overrides_and_refuses_unknown_sets(capsys):
    from app import main

    assert main(["-c", "featureSet=v3"]) == 1
    assert "featureSet: 'v3' is not a feature set" in capsys.readouterr().err
    assert main(["-c", "batchSize"]) == 1
    assert "expected key=value" in capsys.readouterr().err


def test_context_args_parse_as_the_cdk_cli_takes_them():
    assert synth_inputs.parse_context_args('-c batchSize=200 --context featureSet=v2 -c "stackName=A B"') == {
        "batchSize": "200", "featureSet": "v2", "stackName": "A B"}
    assert synth_inputs.parse_context_args("") == {}
    with pytest.raises(ValueError, match="expected -c key=value"):
        synth_inputs.parse_context_args("batchSize=200")


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of what a synth reads: cdk.json, app.py, infra/, functions/, statemachines/, the model artifacts."""
    root = tmp_path / "project"
    for name in ("infra", "functions", "statemachines"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("cdk.json", "app.py", "model/artifacts/model.tar.gz", "model/artifacts/pytorch/model.tar.gz"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    (root / "cdk.out").mkdir()
    return root


def _synthesized(project: Path, **overrides) -> Path:
    context = json.loads((project / "cdk.json").read_text())["context"] | overrides
    synth_inputs.record(project / "cdk.out", context, root=project)
    return project / "cdk.out"


def test_a_fresh_cdk_out_passes_and_its_overrides_must_match(project):
    out = _synthesized(project, batchSize="200")
    assert synth_inputs.check(out, {"batchSize": 200}, root=project)["overrides"] == {"batchSize": "200"}
    assert synth_inputs.check(out, None, root=project)        # None: any overrides
    with pytest.raises(synth_inputs.StaleCdkOut, match=r"synthesized with -c batchSize=200, but this run asks for "
                                                       r"\(none\): run `make synth`"):
        synth_inputs.check(out, {}, root=project)


@pytest.mark.parametrize("change, expected", [
    ("functions/pipeline/features.py", r"functions/pipeline/features.py changed since it was synthesized"),
    ("model/artifacts/model.tar.gz", r"model/artifacts/model.tar.gz changed"),
    ("statemachines/inference.asl.json", r"statemachines/inference.asl.json changed"),
])
def test_a_cdk_out_older_than_its_inputs_is_refused(project, change, expected):
    out = _synthesized(project)
    with (project / change).open("ab") as f:
        f.write(b"\n")
    with pytest.raises(synth_inputs.StaleCdkOut, match=expected):
        synth_inputs.check(out, {}, root=project)


def test_a_changed_cdk_json_or_a_foreign_cdk_out_is_refused(project, tmp_path):
    out = _synthesized(project)
    cdk_json = json.loads((project / "cdk.json").read_text())
    cdk_json["context"]["shardCount"] = 4
    (project / "cdk.json").write_text(json.dumps(cdk_json))
    with pytest.raises(synth_inputs.StaleCdkOut, match=r"cdk.json changed since .* \(shardCount\)"):
        synth_inputs.check(out, {}, root=project)
    with pytest.raises(synth_inputs.StaleCdkOut, match="has no synth-inputs.json"):
        synth_inputs.check(tmp_path, {}, root=project)


def test_the_demo_refuses_a_mismatched_cdk_out(project, capsys):
    from scripts import demo

    out = _synthesized(project, batchSize="200")
    assert demo.main(["--cdk-out", str(out)]) == 2       # before any local cloud starts
    assert "was synthesized with -c batchSize=200, but this run asks for (none)" in capsys.readouterr().err
