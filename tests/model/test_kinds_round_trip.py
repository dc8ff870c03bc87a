"""Artifact round trip for both model kinds: train -> model.tar.gz -> the local SageMaker stand-in's container
(the same loading and inference code the cloud containers run) -> the same scores as the in-memory model, for the
CSV bodies invoke_model sends (pipeline/model_client.to_csv) and the answers it parses (parse_scores)."""
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import xgboost

from localcloud.sagemaker import ContainerError, PyTorchContainer, XGBoostContainer
from model import train, train_pytorch
from pipeline.drift import baseline_from_features
from pipeline.features import FEATURE_NAMES
from pipeline.model_client import parse_scores, to_csv


@pytest.fixture(scope="module")
def dataset():
    return train.build_dataset(users=60, hours=6, seed=3)


@pytest.fixture(scope="module")
def torch_model(dataset, tmp_path_factory):
    x, y = dataset
    model, metrics = train_pytorch.train(x, y, seed=3, epochs=40)
    out = tmp_path_factory.mktemp("pytorch")
    artifact = train_pytorch.write_artifact(model, metrics, baseline_from_features(x), out, "v1",
                                            list(FEATURE_NAMES))
    return model, metrics, artifact


def test_xgboost_artifact_through_the_stand_in_scores_like_the_in_memory_booster(dataset, tmp_path):
    x, y = dataset
    booster, metrics = train.train(x, y, seed=3, rounds=20)
    artifact = train.write_artifact(booster, metrics, {}, tmp_path)
    container = XGBoostContainer.from_model_tarball(artifact, tmp_path / "opt-ml-model")
    rows = x[:300].tolist()
    body, content_type = container.invocations(to_csv(rows), "text/csv", "text/csv")
    assert content_type == "text/csv"
    expected = booster.predict(xgboost.DMatrix(x[:300]))
    assert np.allclose(parse_scores(body), expected, rtol=0, atol=1e-6)


def test_the_xgboost_artifact_is_json_written_by_the_xgboost_of_the_deployed_container(dataset, tmp_path):
    """How we know the built-in container loads it: the container tag names its xgboost (3.0-5 = xgboost 3.0.5) and
    the artifact is XGBoost JSON (which any xgboost >= 1.0 reads) written by that very version."""
    from infra.config import Config

    x, y = dataset
    booster, metrics = train.train(x, y, seed=3, rounds=2)
    artifact = train.write_artifact(booster, metrics, {}, tmp_path)
    with tarfile.open(artifact) as archive:
        assert archive.getnames() == ["xgboost-model"]
        model = json.load(archive.extractfile("xgboost-model"))
    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    tag = Config.from_mapping(context).xgboost_image_tag      # cdk.json xgboostImageTag
    assert ".".join(str(part) for part in model["version"]) == xgboost.__version__ == tag.replace("-", ".")


def test_pytorch_artifact_layout(torch_model):
    _, metrics, artifact = torch_model
    with tarfile.open(artifact) as archive:
        assert sorted(archive.getnames()) == ["baseline.json", "code/inference.py", "model.json", "model.pth"]
        config = json.loads(archive.extractfile("model.json").read())
        baseline = json.loads(archive.extractfile("baseline.json").read())
    assert config["kind"] == "pytorch" and config["feature_set"] == "v1"
    assert config["feature_names"] == list(FEATURE_NAMES) and config["model_version"] == "torch-1"
    assert set(baseline) == set(FEATURE_NAMES)
    assert 0.5 < metrics["holdout_auc"] <= 1.0


def test_pytorch_artifact_through_the_stand_in_scores_like_the_in_memory_model(dataset, torch_model, tmp_path):
    x, _ = dataset
    model, _, artifact = torch_model
    container = PyTorchContainer.from_model_tarball(artifact, tmp_path / "opt-ml-model")
    rows = x[:300].tolist()
    body, content_type = container.invocations(to_csv(rows), "text/csv", "text/csv")
    assert content_type == "text/csv"
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.tensor(x[:300], dtype=torch.float32))).numpy()
    scores = parse_scores(body)
    assert len(scores) == 300 and np.allclose(scores, expected, rtol=0, atol=1e-6)
    # the toolkit's default accept (application/json) and JSON lines; a missing field is accepted
    body, content_type = container.invocations(to_csv(rows[:2]), "text/csv", "")
    assert content_type == "application/json"
    assert np.allclose([p["score"] for p in json.loads(body)["predictions"]], expected[:2], atol=1e-6)
    body, _ = container.invocations(b"1,,3" + b",0" * (len(FEATURE_NAMES) - 3), "text/csv", "application/jsonlines")
    assert 0.0 <= json.loads(body.splitlines()[0])["score"] <= 1.0


def test_pytorch_container_errors_are_the_toolkits_500(torch_model, tmp_path):
    _, _, artifact = torch_model
    container = PyTorchContainer.from_model_tarball(artifact, tmp_path / "opt-ml-model")
    with pytest.raises(ContainerError) as caught:
        container.invocations(b'{"x": 1}', "application/json", "text/csv")
    assert caught.value.status == 500 and "text/csv" in str(caught.value)
    with pytest.raises(ContainerError):
        container.invocations(b"1.0,abc", "text/csv", "text/csv")


def test_pytorch_training_is_seeded(dataset):
    x, y = dataset
    first, _ = train_pytorch.train(x, y, seed=5, epochs=1)
    second, _ = train_pytorch.train(x, y, seed=5, epochs=1)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
