"""Train the PyTorch model (a small MLP on the same features and labels as the XGBoost model) and write a
SageMaker PyTorch-container artifact.

    python model/train.py --kinds pytorch      (model/train.py builds the dataset once for both kinds)

<out>/pytorch/model.tar.gz holds:
    model.pth           the state_dict (torch.save zip format, loaded with torch.load(weights_only=True))
    model.json          layer sizes, feature set and names, model version, metrics
    baseline.json       the drift baseline (pipeline/drift.py baseline_from_features of the training features)
    code/inference.py   model_fn / input_fn / predict_fn / output_fn (copied from model/code/inference.py)
<out>/pytorch/metadata.json repeats model.json for people.

CPU only, seeded (torch.manual_seed, one thread, deterministic algorithms): the same data gives the same weights.
"""
from __future__ import annotations

import importlib.util
import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
INFERENCE_CODE = ROOT / "model" / "code" / "inference.py"
MODEL_VERSION = "torch-1"
HIDDEN = (32, 16)
EPOCHS = 6
BATCH = 512
LEARNING_RATE = 3e-3


def inference_module():
    """model/code/inference.py as a module (the same file that ships in the artifact)."""
    spec = importlib.util.spec_from_file_location("model_code_inference", INFERENCE_CODE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(x: np.ndarray, y: np.ndarray, seed: int, epochs: int = EPOCHS):
    """Same 80/20 split as the XGBoost model (model/train.py). Returns (model, metrics)."""
    import torch
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    code = inference_module()
    order = np.random.default_rng(seed).permutation(len(y))
    split = int(0.8 * len(y))
    train_idx, test_idx = order[:split], order[split:]
    x_train = torch.from_numpy(np.asarray(x[train_idx], dtype=np.float32))
    y_train = torch.from_numpy(np.asarray(y[train_idx], dtype=np.float32))
    model = code.ScoreNet(x.shape[1], HIDDEN)
    with torch.no_grad():
        transformed = code.ScoreNet.transform(x_train)
        model.mean.copy_(transformed.mean(0))
        model.std.copy_(transformed.std(0).clamp_min(1e-6))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    from scripts.progress import progress

    with progress("PyTorch epochs", epochs) as advance:
        for _ in range(epochs):
            permutation = torch.randperm(len(y_train), generator=generator)
            for start in range(0, len(permutation), BATCH):
                batch = permutation[start:start + BATCH]
                optimizer.zero_grad()
                loss = loss_fn(model(x_train[batch]), y_train[batch])
                loss.backward()
                optimizer.step()
            advance()
    model.eval()
    holdout = code.predict_fn(torch.from_numpy(np.asarray(x[test_idx], dtype=np.float32)), model)
    metrics = {"holdout_auc": round(float(roc_auc_score(y[test_idx], holdout)), 4), "rows": int(len(y)),
               "positives": int(y.sum()), "epochs": epochs, "hidden": list(HIDDEN), "torch": torch.__version__}
    return model, metrics


def write_artifact(model, metrics: dict, baseline: dict, out: Path, feature_set: str,
                   feature_names: list[str], image_tag: str = "") -> Path:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    from pipeline.features import FEATURE_REVISION

    config = {"model_version": MODEL_VERSION, "kind": "pytorch", "feature_set": feature_set,
              "feature_revision": FEATURE_REVISION,
              "feature_names": feature_names, "hidden": list(HIDDEN), "metrics": metrics,
              "container": f"pytorch-inference:{image_tag}" if image_tag else "pytorch-inference"}
    files = {"model.pth": weights.getvalue(), "model.json": json.dumps(config, indent=2).encode(),
             "baseline.json": json.dumps(baseline).encode(), "code/inference.py": INFERENCE_CODE.read_bytes()}
    artifact = out / "model.tar.gz"
    with tarfile.open(artifact, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    (out / "metadata.json").write_text(json.dumps(config, indent=2) + "\n")
    return artifact


def main_step(x: np.ndarray, y: np.ndarray, seed: int, out: Path, feature_set: str, feature_names: list[str],
              baseline: dict, image_tag: str = "") -> dict:
    started = time.perf_counter()
    model, metrics = train(x, y, seed)
    metrics["train_seconds"] = round(time.perf_counter() - started, 2)
    artifact = write_artifact(model, metrics, baseline, out, feature_set, feature_names, image_tag)
    print(f"PyTorch MLP {HIDDEN}: holdout AUC {metrics['holdout_auc']:.4f}; wrote {artifact} "
          f"({artifact.stat().st_size / 1024:.0f} KiB), trained in {metrics['train_seconds']:.1f} s", flush=True)
    return metrics
