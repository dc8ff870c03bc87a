"""Drift on the model's own data: the training baseline vs per-event features drawn from the training
distribution (no drift) and from a shifted population (drift); monitor_drift end to end on moto: ledger -> PSI/KS
-> PutMetricData -> the drift alarm's state (evaluated by localcloud/alarms.py: moto does not evaluate alarms)."""
import json
import time

import boto3
import numpy as np
import pytest

from drift_data import event_features, features_of, tar_gz
from localcloud.alarms import evaluate_alarm
from model import train
from pipeline import drift
from pipeline.features import FEATURE_NAMES
from scripts import loadgen

THRESHOLD = 0.25      # cdk.json alarms.driftPsi


@pytest.fixture(scope="module")
def baseline():
    x, _ = train.build_dataset(users=200, hours=24, seed=7)
    return drift.baseline_from_features(x)


def sample(matrix: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A uniform sample of the stream's events (the ledger scan is not in time order either)."""
    return matrix[np.random.default_rng(seed).permutation(len(matrix))[:n]]


def _max(report: dict, key: str) -> float:
    return max(v[key] for n, v in report.items() if key in v and n not in drift.CALENDAR_FEATURES)


def test_no_drift_on_data_from_the_training_distribution(baseline):
    report = drift.compare(baseline, sample(event_features(150, 24, seed=11), 5000))
    assert _max(report, "psi") < 0.1 < THRESHOLD
    assert _max(report, "ks") < 0.2     # KS is reported, not alarmed: a few hundred users move it by ~0.1


def test_drift_on_a_shifted_population(baseline):
    report = drift.compare(baseline, sample(event_features(60, 24, seed=12, shifted=True), 5000))
    assert _max(report, "psi") > THRESHOLD
    assert report["device_code"]["psi"] > THRESHOLD and report["events_1h"]["ks"] > 0.2


def _journal(vectors: np.ndarray, prefix: str, per_batch: int = 100) -> None:
    """Batch journals as process_stream writes them (journal/<hour>/<shard>/<batch>.json), in the current hour."""
    from datetime import datetime, timezone
    now = time.time()
    hour = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H")
    s3 = boto3.client("s3", region_name="us-east-1")
    for start in range(0, len(vectors), per_batch):
        rows = [{"event_id": f"{prefix}-{i}", "user_id": f"u{i % 50}", "ts": now - i % 600, "ingest_ts": now,
                 "features": [round(float(v), 6) for v in vectors[i]]}
                for i in range(start, min(start + per_batch, len(vectors)))]
        s3.put_object(Bucket="artifacts", Key=f"journal/{hour}/shardId-0/{prefix}-{start}.json",
                      Body=json.dumps({"rows": rows, "records": {}}).encode())


def test_monitor_drift_publishes_and_the_alarm_changes_state(aws, monkeypatch, baseline, lambda_context):
    x, y = train.build_dataset(users=40, hours=4, seed=1)
    booster, metrics = train.train(x, y, seed=1, rounds=5)
    booster.set_attr(baseline=json.dumps(baseline))    # as train.write_artifact stores it
    archive = tar_gz("xgboost-model", bytes(booster.save_raw(raw_format="json")))
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models-bucket")
    s3.put_object(Bucket="models-bucket", Key="model.tar.gz", Body=archive)
    monkeypatch.setenv("MODEL_DATA_URL", "s3://models-bucket/model.tar.gz")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "RealtimeInference")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "realtime-inference")
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    cloudwatch.put_metric_alarm(   # as the stack defines AlarmFeatureDrift
        AlarmName="drift", Namespace="RealtimeInference", MetricName="FeatureDriftMaxPSI", Statistic="Maximum",
        Dimensions=[{"Name": "service", "Value": "realtime-inference"}], Period=300, EvaluationPeriods=1,
        Threshold=THRESHOLD, ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    from monitor_drift import handler

    _journal(sample(event_features(100, 24, seed=21), 3000), "same")
    result = handler.handler({}, lambda_context)
    assert result["samples"] == 3000 and result["max_psi"] < THRESHOLD and result["datapoints"] > 2
    assert result["max_psi_feature"] not in drift.CALENDAR_FEATURES
    assert evaluate_alarm(cloudwatch, "drift")["state"] == "OK"
    assert cloudwatch.describe_alarms(AlarmNames=["drift"])["MetricAlarms"][0]["StateValue"] == "OK"

    _journal(sample(event_features(40, 24, seed=22, shifted=True), 3000), "same")  # overwrites the same batches
    result = handler.handler({}, lambda_context)
    assert result["max_psi"] > THRESHOLD
    points = cloudwatch.get_metric_statistics(
        Namespace="RealtimeInference", MetricName="FeatureDriftMaxPSI", Statistics=["Maximum"], Period=60,
        Dimensions=[{"Name": "service", "Value": "realtime-inference"}],
        StartTime=time.time() - 600, EndTime=time.time() + 60)["Datapoints"]
    assert max(p["Maximum"] for p in points) == pytest.approx(result["max_psi"])
    evaluated = evaluate_alarm(cloudwatch, "drift", now=time.time() + 1)
    assert evaluated["state"] == "ALARM"
    assert cloudwatch.describe_alarms(AlarmNames=["drift"])["MetricAlarms"][0]["StateValue"] == "ALARM"
    # (the no-drift run's datapoint is in the same 5-minute period: Maximum is the shifted run's)


def test_the_recent_sample_is_uniform_over_the_window_not_the_oldest_events(aws):
    # 30 journals of 100 rows with events_1h = 0 were written before 30 with events_1h = 1; a sample of 1,000
    # must hold both about equally (journals are read in random order, not in listing order)
    width = len(FEATURE_NAMES)
    _journal(np.zeros((3000, width)), "a-old")
    _journal(np.ones((3000, width)), "b-new")
    from pipeline.settings import settings

    matrix = drift.recent_features(settings(), limit=1000, rng=np.random.default_rng(3))
    assert matrix.shape == (1000, width)
    assert 0.4 < matrix[:, 0].mean() < 0.6


def test_pytorch_artifacts_carry_the_baseline_too(baseline, tmp_path):
    from model import train_pytorch

    x, y = train.build_dataset(users=30, hours=4, seed=2)
    model, metrics = train_pytorch.train(x, y, seed=2, epochs=1)
    artifact = train_pytorch.write_artifact(model, metrics, baseline, tmp_path, "v1", list(FEATURE_NAMES))
    assert drift.baseline_from_tarball(artifact.read_bytes()) == json.loads(json.dumps(baseline))


def _features_of(events) -> np.ndarray:
    return features_of(raw for raw, kind in events if kind == "good")


def test_the_demo_load_replays_event_time_and_does_not_drift(baseline):
    """`make run` sends loadgen's default workload; a replay of 24 h of event time has the training distribution,
    while stamping every event with the current time (a day of activity in seconds) is drift."""
    replay = _features_of(loadgen.generate(6000, None, seed=7, bad_fraction=0.02, duplicate_fraction=0.02))
    live = _features_of(loadgen.generate(6000, None, seed=7, bad_fraction=0.02, duplicate_fraction=0.02,
                                         history_hours=0))
    assert len(replay) > 5500 and len(live) > 5500
    assert _max(drift.compare(baseline, replay), "psi") < THRESHOLD
    assert _max(drift.compare(baseline, live), "psi") > THRESHOLD
