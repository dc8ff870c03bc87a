"""Feature drift: PSI (and a KS distance for continuous features) between recent features and the training
baseline stored inside the live model's artifact (XGBoost: Booster attribute "baseline"; PyTorch: baseline.json),
published as CloudWatch metrics (PutMetricData) that AlarmFeatureDrift watches."""
from __future__ import annotations

import io
import json
import tarfile
from urllib.parse import urlparse

import numpy as np

from . import aws, stream
from .features import FEATURE_NAMES
from .settings import Settings

EPSILON = 1e-4
SAMPLE_LIMIT = 5000
MAX_JOURNALS = 200   # batch journals read per run at most: the sample's cost does not grow with the traffic
JOURNAL_SHARE = 50   # rows taken from one journal at most: limit / JOURNAL_SHARE
WINDOW_SECONDS = 24 * 3600
# Calendar features: their distribution is set by the window the sample covers (a 1-hour sample has one
# hour_of_day), not by a change in the data, so they are reported but do not count towards the max PSI / KS.
CALENDAR_FEATURES = frozenset({"hour_of_day", "is_weekend"})


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


def ks_distance(values: np.ndarray, quantiles: list[float], cdf: list[float] | None = None) -> float:
    """Max gap between the empirical CDF of ``values`` and the baseline CDF, both taken at the baseline's
    quantile points. ``cdf``: the baseline's CDF at those points (exact with ties, e.g. a mass of zeros); without
    it (older baselines) the quantile levels are used, which overstates the gap at a point mass."""
    if len(values) == 0:
        return 0.0
    qs = np.asarray(quantiles, dtype=float)
    levels = np.asarray(cdf, dtype=float) if cdf is not None else np.linspace(0, 1, len(qs))
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
                          "quantiles": (quantiles := np.quantile(column, np.linspace(0, 1, 21))).tolist(),
                          "cdf": (np.searchsorted(np.sort(column), quantiles, side="right") / len(column)).tolist(),
                          "continuous": bool(len(np.unique(column)) > 20)}
    return baseline


def compare(baseline: dict, matrix: np.ndarray) -> dict[str, dict]:
    report = {}
    for i, name in enumerate(FEATURE_NAMES):
        b = baseline[name]
        column = matrix[:, i]
        entry = {"psi": psi(b["fractions"], histogram(column, b["edges"]))}
        if b.get("continuous"):
            entry["ks"] = ks_distance(column, b["quantiles"], b.get("cdf"))
        report[name] = entry
    return report


def baseline_from_tarball(body: bytes) -> dict:
    """The training baseline inside a model.tar.gz of either kind."""
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        names = archive.getnames()
        if "baseline.json" in names:                      # PyTorch artifact (model/train_pytorch.py)
            return json.loads(_member(archive, "baseline.json"))
        raw = _member(archive, "xgboost-model")  # XGBoost artifact: a Booster attribute
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    baseline = booster.attr("baseline")
    if baseline is None:
        raise ValueError("the XGBoost model carries no 'baseline' attribute (model/train.py sets it)")
    return json.loads(baseline)


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)  # None for a directory or link entry
    if member is None:
        raise ValueError(f"{name} in the model artifact is not a regular file")
    return member.read()


def load_baseline(model_data_url: str) -> dict:
    uri = urlparse(model_data_url)
    body = aws.client("s3").get_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))["Body"].read()
    return baseline_from_tarball(body)


def live_model_data_url(settings: Settings) -> str:
    """The artifact of the live primary variant (recorded by a promotion in STATE_TABLE "model"), else the
    deployed one (MODEL_DATA_URL)."""
    from . import variants

    for variant in variants.live_variants(settings):
        if variant.model_data_url:
            return variant.model_data_url
    return settings.model_data_url


def recent_features(settings: Settings, limit: int = SAMPLE_LIMIT, window_seconds: float = WINDOW_SECONDS,
                    now: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Feature vectors of a uniform sample of up to ``limit`` accepted events of the last ``window_seconds``, read
    from the batch journals (pipeline/stream.py: one S3 object per batch, under journal/<hour>/, holding each
    event's vector as scored).

    Per EVENT, like the training baseline (one row per training event): comparing the baseline with one latest
    vector per user (the features table) reports drift on unshifted data, because per-user sampling re-weights
    busy and quiet users (measured: PSI 0.5 on events_24h for a stream drawn from the training distribution).

    Bounded whatever the traffic: one listing page (up to 1,000 journals) per hour of the window, then journals in
    random order, at most ``MAX_JOURNALS`` of them, a random ``limit / JOURNAL_SHARE`` rows of each, until ``limit``
    rows.
    Journal keys sort by shard and batch id (a hash), so a listing page is a random subset of its hour's batches."""
    import time as _time

    rng = rng or np.random.default_rng()
    now = now if now is not None else _time.time()
    width = len(FEATURE_NAMES)
    s3 = aws.client("s3")
    keys: list[str] = []
    for prefix in stream.journal_hour_prefixes(window_seconds / 3600, now):
        listing = s3.list_objects_v2(Bucket=settings.artifacts_bucket, Prefix=prefix, MaxKeys=1000)
        keys += [obj["Key"] for obj in listing.get("Contents", [])]
    rows: list[list[float]] = []
    for index in rng.permutation(len(keys))[:MAX_JOURNALS]:
        if len(rows) >= limit:
            break
        journal = stream.read_journal(settings, keys[index]) or {}  # (one may expire between listing and read)
        found = [r["features"] for r in journal.get("rows", []) if len(r["features"]) == width
                 and r["ts"] >= now - window_seconds]
        # a random part of each journal, so the sample spreads over at least JOURNAL_SHARE batches
        rows += [found[i] for i in rng.permutation(len(found))[:max(1, limit // JOURNAL_SHARE)]]
    matrix = np.asarray(rows, dtype=float).reshape(-1, width)
    return matrix[rng.permutation(len(matrix))[:limit]]


def monitor(settings: Settings) -> dict:
    matrix = recent_features(settings)
    if len(matrix) == 0:
        return {"status": "no recent features", "samples": 0}
    model_data_url = live_model_data_url(settings)
    report = compare(load_baseline(model_data_url), matrix)
    watched = [n for n in report if n not in CALENDAR_FEATURES]
    worst = max(watched, key=lambda n: report[n]["psi"])
    ks = {n: report[n]["ks"] for n in watched if "ks" in report[n]}
    worst_ks = max(ks, key=lambda n: ks[n]) if ks else None
    return {"status": "ok", "samples": int(len(matrix)), "max_psi": report[worst]["psi"], "max_psi_feature": worst,
            "max_ks": ks[worst_ks] if worst_ks else None, "max_ks_feature": worst_ks,
            "model_data_url": model_data_url, "features": report}


def publish(result: dict, namespace: str, service: str) -> int:
    """PutMetricData: FeatureDriftMaxPSI and FeatureDriftMaxKS (dimension service, what AlarmFeatureDrift watches)
    and per-feature FeatureDriftPSI / FeatureDriftKS (dimensions service, feature). Returns the datapoints sent.

    PutMetricData rather than Powertools EMF: the metrics reach CloudWatch the same way in AWS and in the local cloud
    (which does not turn EMF log lines into metrics), so the drift alarm can be evaluated locally."""
    if not result.get("samples"):
        return 0
    service_dim = [{"Name": "service", "Value": service}]
    data = [{"MetricName": "FeatureDriftMaxPSI", "Dimensions": service_dim, "Value": float(result["max_psi"]),
             "Unit": "None"}]
    if result.get("max_ks") is not None:
        data.append({"MetricName": "FeatureDriftMaxKS", "Dimensions": service_dim, "Value": float(result["max_ks"]),
                     "Unit": "None"})
    for name, entry in result["features"].items():
        dims = service_dim + [{"Name": "feature", "Value": name}]
        data.append({"MetricName": "FeatureDriftPSI", "Dimensions": dims, "Value": float(entry["psi"]),
                     "Unit": "None"})
        if "ks" in entry:
            data.append({"MetricName": "FeatureDriftKS", "Dimensions": dims, "Value": float(entry["ks"]),
                         "Unit": "None"})
    cloudwatch = aws.client("cloudwatch")
    for start in range(0, len(data), 1000):               # PutMetricData takes up to 1000 datums per call
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start:start + 1000])
    return len(data)
