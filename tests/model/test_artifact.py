"""The artifact round trip: train -> model.tar.gz -> load as the container does -> same scores."""
import json
import tarfile

import numpy as np
import xgboost

from model import train
from pipeline.features import FEATURE_NAMES


def test_artifact_round_trip_gives_the_in_memory_scores(tmp_path):
    x, y = train.build_dataset(users=60, hours=6, seed=1)
    booster, metrics = train.train(x, y, seed=1, rounds=20)
    artifact = train.write_artifact(booster, metrics, {"placeholder": True}, tmp_path)
    with tarfile.open(artifact) as archive:
        assert archive.getnames() == ["xgboost-model"]  # the container loads the model file it finds
        archive.extractall(tmp_path / "extracted", filter="data")
    loaded = xgboost.Booster(params={"nthread": 1})
    loaded.load_model(str(tmp_path / "extracted" / "xgboost-model"))
    expected = booster.predict(xgboost.DMatrix(x[:200]))
    assert np.allclose(loaded.predict(xgboost.DMatrix(x[:200])), expected)
    assert loaded.attr("feature_set") == "v1"
    assert json.loads(loaded.attr("feature_names")) == list(FEATURE_NAMES)
    assert 0.5 < metrics["holdout_auc"] <= 1.0


def test_a_v2_model_declares_its_feature_set(tmp_path):
    x, y = train.build_dataset(users=40, hours=4, seed=2, feature_set="v2")
    assert x.shape[1] == 25
    booster, metrics = train.train(x, y, seed=2, rounds=5)
    train.write_artifact(booster, metrics, {}, tmp_path, feature_set="v2")
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["feature_set"] == "v2" and len(metadata["feature_names"]) == 25
    assert booster.num_features() == 25 and booster.attr("feature_set") == "v2"
    # the feature definition it was trained on (revision 2: tiled windows); a model of another revision would be
    # served vectors it was not trained on
    from pipeline.features import FEATURE_REVISION
    assert metadata["feature_revision"] == FEATURE_REVISION == int(booster.attr("feature_revision")) == 2


def test_the_shipped_models_were_trained_on_the_current_feature_revision():
    from pathlib import Path
    from pipeline.features import FEATURE_REVISION
    root = Path(__file__).resolve().parents[2] / "model" / "artifacts"
    for metadata in (root / "metadata.json", root / "pytorch" / "metadata.json"):
        assert json.loads(metadata.read_text()).get("feature_revision") == FEATURE_REVISION, metadata
