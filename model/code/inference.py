"""Inference code of the PyTorch model, for the SageMaker PyTorch inference container (pytorch-inference, CPU).

The container (sagemaker-pytorch-inference-toolkit) extracts model.tar.gz into /opt/ml/model, imports
code/inference.py and serves ``POST /invocations`` with these four functions:
``model_fn(model_dir)`` once, then per request ``input_fn(body, content_type)`` -> ``predict_fn(data, model)``
-> ``output_fn(prediction, accept)``. The local SageMaker stand-in (localcloud/sagemaker.py) calls the same
functions in the same order, and model/train_pytorch.py builds the network from ``ScoreNet`` below, so training,
the cloud and the local cloud share one definition.

Contract (same as the XGBoost endpoint): text/csv in, one row of features per line, no header, empty field =
missing (0 after scaling); text/csv out, one score (P(label = 1)) per line; application/json
``{"predictions": [{"score": s}]}`` and application/jsonlines are also answered.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

WEIGHTS = "model.pth"       # state_dict (torch.save zip format; torch.load(weights_only=True))
CONFIG = "model.json"       # layer sizes, feature names, feature set, model version, metrics
CSV, JSON, JSONLINES = "text/csv", "application/json", "application/jsonlines"


class ScoreNet(nn.Module):
    """MLP on signed-log1p, standardized features -> logit. The scaling travels in the state_dict (buffers)."""

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (32, 16)):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    @staticmethod
    def transform(x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x) * torch.log1p(torch.abs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # logits, shape (n,)
        z = (self.transform(x) - self.mean) / self.std
        z = torch.nan_to_num(z, nan=0.0)                   # a missing value is the training mean
        return self.layers(z).squeeze(-1)


def model_fn(model_dir: str) -> ScoreNet:
    with open(os.path.join(model_dir, CONFIG)) as fh:
        config = json.load(fh)
    model = ScoreNet(len(config["feature_names"]), tuple(config["hidden"]))
    model.load_state_dict(torch.load(os.path.join(model_dir, WEIGHTS), map_location="cpu", weights_only=True))
    model.eval()
    return model


def parse_csv(body: bytes | str) -> np.ndarray:
    """text/csv rows -> float32 matrix. Fast path: numpy's C parser; bodies with empty fields take the slow path."""
    text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    text = text.strip()
    if not text:
        return np.zeros((0, 0), dtype=np.float32)
    lines = text.split("\n")
    try:   # numpy's C parser
        return np.loadtxt(lines, delimiter=",", dtype=np.float32, ndmin=2, comments=None)
    except ValueError:
        pass   # empty fields (missing values): row by row
    rows = [[v if v.strip() else "nan" for v in line.strip().split(",")] for line in lines]
    return np.array(rows, dtype=np.float32)


def input_fn(request_body, content_type: str = CSV) -> torch.Tensor:
    content_type = (content_type or CSV).split(";")[0].strip().lower()
    if content_type != CSV:
        raise ValueError(f"Content type {content_type} is not supported: send text/csv")
    return torch.from_numpy(parse_csv(request_body))


def predict_fn(data: torch.Tensor, model: ScoreNet) -> np.ndarray:
    if data.numel() == 0:
        return np.zeros(0, dtype=np.float32)
    with torch.inference_mode():
        return torch.sigmoid(model(data)).numpy()


def output_fn(prediction: np.ndarray, accept: str = CSV):
    accept = (accept or CSV).split(";")[0].strip().lower()
    scores = [float(s) for s in np.asarray(prediction).reshape(-1)]
    if accept in (CSV, "*/*"):
        return "".join(f"{s!r}\n" for s in scores), CSV
    if accept == JSON:
        return json.dumps({"predictions": [{"score": s} for s in scores]}), JSON
    if accept == JSONLINES:
        return "".join(json.dumps({"score": s}) + "\n" for s in scores), JSONLINES
    raise ValueError(f"Accept type {accept} is not supported: use {CSV}, {JSON} or {JSONLINES}")
