"""Feature drift: PSI (and a KS distance for continuous features) between recent features and the training
baseline stored inside the model artifact (xgboost Booster attribute "baseline")."""
from __future__ import annotations

import io
import json
import tarfile
from urllib.parse import urlparse

import numpy as np

from . import aws, store
from .features import FEATURE_NAMES, FEATURE_SET
from .settings import Settings

EPSILON = 1e-4
SAMPLE_LIMIT = 5000


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms (fractions per bin)."""
    e = np.clip(np.asarray(expected, dtype=float), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def histogram(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Fractions per bin; the outer bins are open so every value lands somewhere."""
    inner = np.asarray(edges[1:-1], dtype=float)
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(edges) - 1)
    return counts / max(len(values), 1)


def ks_distance(values: np.ndarray, quantiles: list[float]) -> float:
    """Max gap between the empirical CDF of ``values`` and the baseline CDF known at its quantiles."""
    if len(values) == 0:
        return 0.0
    qs = np.asarray(quantiles, dtype=float)
    levels = np.linspace(0, 1, len(qs))
    sorted_values = np.sort(values)
    empirical = np.searchsorted(sorted_values, qs, side="right") / len(values)
    return float(np.max(np.abs(empirical - levels)))


def baseline_from_features(matrix: np.ndarray, bins: int = 10) -> dict:
    """Baseline saved with the model at training time."""
    baseline = {}
    for i, name in enumerate(FEATURE_NAMES):
        column = matrix[:, i]
        edges = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)))
        if len(edges) < 3:
            edges = np.array([column.min() - 0.5, column.min() + 0.5, column.max() + 1.0])
        baseline[name] = {"edges": edges.tolist(), "fractions": histogram(column, edges.tolist()).tolist(),
                          "quantiles": np.quantile(column, np.linspace(0, 1, 21)).tolist(),
                          "continuous": bool(len(np.unique(column)) > 20)}
    return baseline


def compare(baseline: dict, matrix: np.ndarray) -> dict[str, dict]:
    report = {}
    for i, name in enumerate(FEATURE_NAMES):
        b = baseline[name]
        column = matrix[:, i]
        entry = {"psi": psi(b["fractions"], histogram(column, b["edges"]))}
        if b.get("continuous"):
            entry["ks"] = ks_distance(column, b["quantiles"])
        report[name] = entry
    return report


def load_baseline(model_data_url: str) -> dict:
    import xgboost

    uri = urlparse(model_data_url)
    body = aws.client("s3").get_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        raw = archive.extractfile("xgboost-model").read()
    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    return json.loads(booster.attr("baseline"))


def recent_features(settings: Settings, limit: int = SAMPLE_LIMIT) -> np.ndarray:
    """Latest feature vector of up to ``limit`` users (Scan of the features table)."""
    table = aws.table(settings.features_table)
    rows, kwargs = [], {"ProjectionExpression": "features, feature_set"}
    while len(rows) < limit:
        response = table.scan(**kwargs)
        for item in store.from_item(response.get("Items", [])):
            if item.get("feature_set") == FEATURE_SET and item.get("features"):
                rows.append([item["features"].get(n, 0.0) for n in FEATURE_NAMES])
        if "LastEvaluatedKey" not in response:
            break
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return np.asarray(rows, dtype=float).reshape(-1, len(FEATURE_NAMES))


def monitor(settings: Settings) -> dict:
    matrix = recent_features(settings)
    if len(matrix) == 0:
        return {"status": "no recent features", "samples": 0}
    report = compare(load_baseline(settings.model_data_url), matrix)
    worst = max(report, key=lambda n: report[n]["psi"])
    return {"status": "ok", "samples": int(len(matrix)), "max_psi": report[worst]["psi"], "max_psi_feature": worst,
            "features": report}
