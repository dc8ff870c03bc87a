"""Train the models on a seeded synthetic stream and write SageMaker artifacts.

    python model/train.py [--out model/artifacts] [--users 800] [--hours 24] [--seed 7] [--kinds xgboost,pytorch]

Both kinds learn the same task from the same dataset and split: XGBoost (below) and a small PyTorch MLP
(model/train_pytorch.py -> <out>/pytorch/model.tar.gz for the SageMaker PyTorch inference container).

Writes <out>/model.tar.gz holding one file, ``xgboost-model`` (XGBoost JSON), which the SageMaker XGBoost
built-in container 3.0-5 (xgboost 3.0.5, the version pinned in requirements.txt) loads. The feature set, model
version, training metrics and the drift baseline travel inside the model as Booster attributes, and
<out>/metadata.json repeats them for people.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import xgboost
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from model.synthetic import label_probability, make_users, stream  # noqa: E402
from scripts.progress import progress  # noqa: E402
from pipeline.drift import baseline_from_features  # noqa: E402
from pipeline.events import Event  # noqa: E402
from pipeline.features import (FEATURE_REVISION, FEATURE_SET, FEATURE_SETS, FeatureState, feature_names,  # noqa: E402
                               named)

MODEL_VERSION = "xgb-1"
PARAMS = {"objective": "binary:logistic", "eval_metric": "auc", "max_depth": 4, "eta": 0.15,
          "subsample": 0.9, "nthread": 1, "seed": 7}


def build_dataset(users: int, hours: float, seed: int, feature_set: str = FEATURE_SET) -> tuple[np.ndarray, np.ndarray]:
    rng = random.Random(seed)
    population = make_users(users, rng)
    states: dict[str, FeatureState] = {}
    rows, labels = [], []
    start = time.time() - hours * 3600
    with progress("features (hours of event time)", hours) as advance:
        for raw in stream(population, start, hours * 3600, rng):
            event = Event.model_validate(raw)
            features = states.setdefault(event.user_id, FeatureState(feature_set)).add(event)
            rows.append(features)
            labels.append(1 if rng.random() < label_probability(named(features, feature_set)) else 0)
            if len(rows) % 2000 == 0:
                advance(completed=round((event.timestamp - start) / 3600, 1))
        advance(completed=hours)
    return np.asarray(rows, dtype=np.float32), np.asarray(labels, dtype=np.float32)


class _Advance(xgboost.callback.TrainingCallback):
    """One progress step per boosting round."""

    def __init__(self, advance):
        super().__init__()
        self.advance = advance

    def after_iteration(self, model, epoch, evals_log) -> bool:
        self.advance()
        return False     # never stops training itself


def train(x: np.ndarray, y: np.ndarray, seed: int, rounds: int = 150) -> tuple[xgboost.Booster, dict]:
    order = np.random.default_rng(seed).permutation(len(y))
    split = int(0.8 * len(y))
    train_idx, test_idx = order[:split], order[split:]
    dtrain = xgboost.DMatrix(x[train_idx], label=y[train_idx])
    dtest = xgboost.DMatrix(x[test_idx], label=y[test_idx])
    with progress("XGBoost rounds (stops early)", rounds) as advance:
        booster = xgboost.train(PARAMS, dtrain, num_boost_round=rounds, evals=[(dtest, "holdout")],
                                early_stopping_rounds=20, verbose_eval=False, callbacks=[_Advance(advance)])
    holdout_auc = float(roc_auc_score(y[test_idx], booster.predict(dtest, iteration_range=(0, booster.best_iteration + 1))))
    return booster, {"holdout_auc": round(holdout_auc, 4), "rows": int(len(y)), "positives": int(y.sum()),
                     "best_iteration": int(booster.best_iteration), "xgboost": xgboost.__version__}


def write_artifact(booster: xgboost.Booster, metrics: dict, baseline: dict, out: Path,
                   feature_set: str = FEATURE_SET) -> Path:
    booster.set_attr(feature_set=feature_set, feature_revision=str(FEATURE_REVISION), model_version=MODEL_VERSION,
                     feature_names=json.dumps(feature_names(feature_set)), metrics=json.dumps(metrics),
                     baseline=json.dumps(baseline))
    out.mkdir(parents=True, exist_ok=True)
    raw = bytes(booster.save_raw(raw_format="json"))
    artifact = out / "model.tar.gz"
    with tarfile.open(artifact, "w:gz") as archive:
        info = tarfile.TarInfo("xgboost-model")
        info.size, info.mtime = len(raw), 0
        archive.addfile(info, io.BytesIO(raw))
    (out / "metadata.json").write_text(json.dumps(
        {"model_version": MODEL_VERSION, "feature_set": feature_set, "feature_revision": FEATURE_REVISION,
         "feature_names": feature_names(feature_set),
         "container": "sagemaker-xgboost:3.0-5", "metrics": metrics}, indent=2) + "\n")
    return artifact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "model" / "artifacts")
    parser.add_argument("--users", type=int, default=800)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--feature-set", choices=sorted(FEATURE_SETS), default=FEATURE_SET,
                        help="the feature set the model is trained on and declares (must match cdk.json featureSet)")
    parser.add_argument("--kinds", default="xgboost,pytorch",
                        help="comma-separated model kinds to train: xgboost (<out>/model.tar.gz), "
                             "pytorch (<out>/pytorch/model.tar.gz)")
    args = parser.parse_args(argv)
    kinds = {k.strip() for k in args.kinds.split(",") if k.strip()}
    if not kinds or kinds - {"xgboost", "pytorch"}:
        parser.error(f"--kinds: choose from xgboost, pytorch (got {args.kinds!r})")
    started = time.perf_counter()
    print(f"generating a synthetic stream: {args.users} users over {args.hours:g} h (seed {args.seed}) ...",
          flush=True)
    x, y = build_dataset(args.users, args.hours, args.seed, args.feature_set)
    baseline = baseline_from_features(x)
    if "xgboost" in kinds:
        print(f"training XGBoost on {len(y)} events ({int(y.sum())} positives) ...", flush=True)
        booster, metrics = train(x, y, args.seed)
        artifact = write_artifact(booster, metrics, baseline, args.out, args.feature_set)
        print(f"XGBoost: holdout AUC {metrics['holdout_auc']:.4f}; wrote {artifact} "
              f"({artifact.stat().st_size / 1024:.0f} KiB)", flush=True)
    if "pytorch" in kinds:
        from model import train_pytorch

        print(f"training the PyTorch MLP on {len(y)} events ...", flush=True)
        train_pytorch.main_step(x, y, args.seed, args.out / "pytorch", args.feature_set,
                                feature_names(args.feature_set), baseline)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
