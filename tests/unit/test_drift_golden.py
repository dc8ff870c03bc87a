"""Drift statistics on values worked out by hand (PSI, histograms with values on bin edges, KS on ties), and the
sample's time window and limits on exact boundaries."""
import json
import math

import boto3
import numpy as np
import pytest

from pipeline import drift
from pipeline.features import FEATURE_NAMES
from pipeline.settings import Settings

WIDTH = len(FEATURE_NAMES)
NOW = 1_795_305_600.0 + 1800  # 2026-11-22T00:30:00Z


def test_psi_by_hand():
    # sum (a - e) ln(a / e): (0.3 - 0.5) ln(0.6) + (0.7 - 0.5) ln(1.4)
    assert drift.psi([0.5, 0.5], [0.3, 0.7]) == pytest.approx(-0.2 * math.log(0.6) + 0.2 * math.log(1.4))
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    # an empty bin counts as EPSILON (1e-4), not 0: finite
    assert drift.psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * math.log(1 / 1e-4))
    assert drift.EPSILON == 1e-4


def test_histogram_puts_a_value_on_an_inner_edge_in_the_bin_above_and_keeps_the_outer_bins_open():
    edges = [0.0, 1.0, 2.0, 3.0]
    assert drift.histogram(np.array([1.0, 2.0, 2.0, 0.5]), edges).tolist() == [0.25, 0.25, 0.5]
    assert drift.histogram(np.array([-5.0, 99.0]), edges).tolist() == [0.5, 0.0, 0.5]
    assert drift.histogram(np.array([]), edges).tolist() == [0.0, 0.0, 0.0]


def test_ks_distance_with_and_without_the_baseline_cdf():
    values = np.array([0.0, 0.0, 1.0, 2.0])
    # empirical CDF at the quantile points 0, 1, 2: 0.5, 0.75, 1.0
    assert drift.ks_distance(values, [0.0, 1.0, 2.0], [0.5, 0.75, 1.0]) == 0.0
    assert drift.ks_distance(values, [0.0, 1.0, 2.0], [0.25, 0.75, 1.0]) == pytest.approx(0.25)
    # without a CDF the levels are 0, 0.5, 1 (linspace over the quantiles): max gap 0.5 at the first point
    assert drift.ks_distance(values, [0.0, 1.0, 2.0]) == pytest.approx(0.5)
    # 0, 1, 2, 3 at the points 0, 1.5, 3: empirical 0.25, 0.5, 1.0 against the levels 0, 0.5, 1: max gap 0.25
    assert drift.ks_distance(np.array([0.0, 1.0, 2.0, 3.0]), [0.0, 1.5, 3.0]) == pytest.approx(0.25)
    assert drift.ks_distance(np.array([]), [0.0, 1.0]) == 0.0


def test_baseline_of_a_constant_and_of_a_continuous_column():
    matrix = np.zeros((100, WIDTH))
    matrix[:, 0] = np.arange(100)                      # continuous: 100 distinct values
    matrix[:, 1] = np.arange(100) % 21                 # 21 distinct values: continuous (more than 20)
    matrix[:, 2] = np.arange(100) % 20                 # 20: not
    baseline = drift.baseline_from_features(matrix)
    constant = baseline[FEATURE_NAMES[3]]
    assert constant["edges"] == [-0.5, 0.5, 1.0] and constant["fractions"] == [1.0, 0.0]
    assert constant["continuous"] is False and constant["cdf"] == [1.0] * 21
    ramp = baseline[FEATURE_NAMES[0]]
    assert ramp["continuous"] is True and len(ramp["edges"]) == 11 and len(ramp["quantiles"]) == 21
    assert ramp["edges"][0] == 0.0 and ramp["edges"][-1] == 99.0
    assert ramp["fractions"] == pytest.approx([0.1] * 9 + [0.09 + 0.01])
    assert (baseline[FEATURE_NAMES[1]]["continuous"], baseline[FEATURE_NAMES[2]]["continuous"]) == (True, False)
    report = drift.compare(baseline, matrix)
    assert report[FEATURE_NAMES[0]] == {"psi": pytest.approx(0.0), "ks": pytest.approx(0.0, abs=0.051)}
    assert "ks" not in report[FEATURE_NAMES[3]] and report[FEATURE_NAMES[3]]["psi"] == pytest.approx(0.0)


def _put_journal(key: str, rows: list[dict]) -> None:
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket="artifacts", Key=key, Body=json.dumps({"rows": rows, "records": {}}).encode())


def _row(ts: float, value: float, width: int = WIDTH) -> dict:
    return {"event_id": f"e{ts}", "user_id": "u", "ts": ts, "features": [value] * width}


def test_the_sample_window_includes_its_start_and_skips_other_widths(aws):
    # journals of this hour and of the hour 24 h back (the window's first hour); rows on and just past the start
    _put_journal("journal/2026-11-22T00/shardId-0/b-1.json",
                 [_row(NOW, 1.0), _row(NOW - 10, 2.0), _row(NOW - 5, 9.0, width=WIDTH + 10)])
    _put_journal("journal/2026-11-21T00/shardId-0/b-0.json",
                 [_row(NOW - 86400, 3.0), _row(NOW - 86400 - 0.001, 4.0)])
    _put_journal("journal/2026-11-20T23/shardId-0/b-old.json", [_row(NOW - 86400 - 3600, 5.0)])
    matrix = drift.recent_features(Settings.from_env(), now=NOW, rng=np.random.default_rng(0))
    assert sorted(matrix[:, 0].tolist()) == [1.0, 2.0, 3.0]
    assert matrix.shape == (3, WIDTH)
    assert drift.recent_features(Settings.from_env(), limit=2, now=NOW, rng=np.random.default_rng(0)).shape == (2, WIDTH)


def test_each_journal_gives_at_most_limit_over_50_rows(aws):
    _put_journal("journal/2026-11-22T00/shardId-0/b-1.json", [_row(NOW - i, float(i)) for i in range(30)])
    _put_journal("journal/2026-11-22T00/shardId-0/b-2.json", [_row(NOW - i, 100.0 + i) for i in range(30)])
    matrix = drift.recent_features(Settings.from_env(), limit=1000, now=NOW, rng=np.random.default_rng(1))
    assert matrix.shape == (40, WIDTH)                    # 1000 // 50 = 20 rows from each journal
    assert (matrix[:, 0] < 100).sum() == (matrix[:, 0] >= 100).sum() == 20
    small = drift.recent_features(Settings.from_env(), limit=10, now=NOW, rng=np.random.default_rng(1))
    assert small.shape == (2, WIDTH)                      # at least one row from each journal (10 // 50 = 0)


def test_a_single_value_is_the_whole_histogram_and_three_distinct_edges_are_kept():
    assert drift.histogram(np.array([5.0]), [0.0, 1.0, 2.0]).tolist() == [0.0, 1.0]
    matrix = np.zeros((11, WIDTH))
    matrix[:, 0] = [0.0] * 9 + [1.0, 2.0]                  # deciles 0, ..., 0, 1 (the 90 % one), 2: three edges
    column = drift.baseline_from_features(matrix)[FEATURE_NAMES[0]]
    assert column["edges"] == [0.0, 1.0, 2.0] and column["fractions"] == pytest.approx([9 / 11, 2 / 11])


def test_compare_takes_ks_at_the_baselines_cdf_not_at_the_quantile_levels():
    matrix = np.zeros((100, WIDTH))
    matrix[:, 0] = np.arange(100)
    baseline = drift.baseline_from_features(matrix)
    # with the stored CDF the ramp is its own baseline (0); the quantile levels alone would give 0.01 at 0
    assert drift.compare(baseline, matrix)[FEATURE_NAMES[0]]["ks"] == 0.0
    ramp = baseline[FEATURE_NAMES[0]]
    assert drift.ks_distance(matrix[:, 0], ramp["quantiles"]) > 0.0


def _report(psi: dict, ks: dict | None = None) -> dict:
    return {name: {"psi": psi.get(name, 0.0)} | ({"ks": ks[name]} if ks and name in ks else {})
            for name in FEATURE_NAMES}


def test_monitor_reports_the_worst_watched_feature_and_skips_the_calendar_ones(aws, monkeypatch):
    settings = Settings.from_env()
    assert drift.monitor(settings) == {"status": "no recent features", "samples": 0}
    names = [n for n in FEATURE_NAMES if n not in drift.CALENDAR_FEATURES]
    matrix = np.ones((7, WIDTH))
    report = _report({"hour_of_day": 9.0, names[0]: 0.2, names[1]: 0.3}, {names[0]: 0.5, names[1]: 0.1,
                                                                          "hour_of_day": 0.9})
    monkeypatch.setattr(drift, "recent_features", lambda s: matrix)
    monkeypatch.setattr(drift, "load_baseline", lambda url: {"url": url})
    monkeypatch.setattr(drift, "compare", lambda baseline, m: report if m is matrix else None)
    monkeypatch.setattr(drift, "live_model_data_url", lambda s: "s3://m/model.tar.gz")
    assert drift.monitor(settings) == {
        "status": "ok", "samples": 7, "max_psi": 0.3, "max_psi_feature": names[1], "max_ks": 0.5,
        "max_ks_feature": names[0], "model_data_url": "s3://m/model.tar.gz", "features": report}
    report.clear()
    report.update(_report({names[2]: 0.1}))
    result = drift.monitor(settings)
    assert (result["max_ks"], result["max_ks_feature"], result["max_psi_feature"]) == (None, None, names[2])


def test_the_live_artifact_is_the_promoted_variants_else_the_deployed_one(aws, monkeypatch):
    from pipeline import store
    monkeypatch.setenv("MODEL_DATA_URL", "s3://deployed/model.tar.gz")
    assert drift.live_model_data_url(Settings.from_env()) == "s3://deployed/model.tar.gz"
    store.put_item("state", {"pk": "model", "variants": [
        {"name": "primary", "weight": 1.0}, {"name": "b", "weight": 0.0, "model_data_url": "s3://p/b.tar.gz"},
        {"name": "c", "weight": 0.0, "model_data_url": "s3://p/c.tar.gz"}]})
    assert drift.live_model_data_url(Settings.from_env()) == "s3://p/b.tar.gz"


class _CloudWatch:
    def __init__(self):
        self.calls = []

    def put_metric_data(self, Namespace, MetricData):
        self.calls.append((Namespace, MetricData))


def test_publish_sends_max_and_per_feature_metrics_in_calls_of_at_most_1000(monkeypatch):
    cloudwatch = _CloudWatch()
    monkeypatch.setattr(drift.aws, "client", lambda name: cloudwatch if name == "cloudwatch" else None)
    assert drift.publish({"samples": 0}, "ns", "svc") == 0 and cloudwatch.calls == []
    result = {"samples": 3, "max_psi": 0.5, "max_ks": None, "features": {"a": {"psi": 0.5}, "b": {"psi": 0.1, "ks": 0.2}}}
    assert drift.publish(result, "ns", "svc") == 4
    service = [{"Name": "service", "Value": "svc"}]
    assert cloudwatch.calls == [("ns", [
        {"MetricName": "FeatureDriftMaxPSI", "Dimensions": service, "Value": 0.5, "Unit": "None"},
        {"MetricName": "FeatureDriftPSI", "Dimensions": service + [{"Name": "feature", "Value": "a"}], "Value": 0.5,
         "Unit": "None"},
        {"MetricName": "FeatureDriftPSI", "Dimensions": service + [{"Name": "feature", "Value": "b"}], "Value": 0.1,
         "Unit": "None"},
        {"MetricName": "FeatureDriftKS", "Dimensions": service + [{"Name": "feature", "Value": "b"}], "Value": 0.2,
         "Unit": "None"}])]
    cloudwatch.calls.clear()
    many = {"samples": 1, "max_psi": 1, "max_ks": 2, "features": {f"f{i}": {"psi": i, "ks": i} for i in range(500)}}
    assert drift.publish(many, "ns", "svc") == 1002
    assert [len(data) for _, data in cloudwatch.calls] == [1000, 2]
    assert cloudwatch.calls[0][1][1] == {"MetricName": "FeatureDriftMaxKS", "Dimensions": service, "Value": 2.0,
                                         "Unit": "None"}
    assert cloudwatch.calls[1][1][-1]["Dimensions"][1]["Value"] == "f499"
    assert all(isinstance(d["Value"], float) for _, data in cloudwatch.calls for d in data)


def test_a_ramps_quantiles_and_cdf_by_hand():
    """0, 1, ..., 99: the k-th of 21 evenly spaced quantiles (linear interpolation, numpy's default) is
    k / 20 * 99 = 4.95 k; the CDF there counts the values <= 4.95 k: floor(4.95 k) + 1 of 100."""
    matrix = np.zeros((100, WIDTH))
    matrix[:, 0] = np.arange(100)
    ramp = drift.baseline_from_features(matrix)[FEATURE_NAMES[0]]
    assert ramp["quantiles"] == pytest.approx([4.95 * k for k in range(21)], abs=1e-9)
    assert ramp["cdf"] == pytest.approx([(math.floor(4.95 * k) + 1) / 100 for k in range(21)], abs=1e-12)
    assert ramp["cdf"][:3] == pytest.approx([0.01, 0.05, 0.10]) and ramp["cdf"][-1] == 1.0


def test_load_baseline_reads_the_object_the_url_names_key_as_written(aws):
    """s3://<bucket>/<key>: the key is the path without its leading '/' and nothing else (a key may start with
    any character, here 'X')."""
    from drift_data import tar_gz

    body = json.dumps({"events_1h": {"edges": [0.0, 1.0, 2.0]}}).encode()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="XGB-runs/v2/model.tar.gz",
                  Body=tar_gz("baseline.json", body))   # a PyTorch-style artifact: baseline.json
    assert drift.load_baseline("s3://models/XGB-runs/v2/model.tar.gz") == {"events_1h": {"edges": [0.0, 1.0, 2.0]}}


def test_the_sample_lists_the_windows_first_hour_when_the_window_starts_in_its_last_seconds(aws):
    # now 2026-11-21T23:59:50Z: the 24-hour window starts at 2026-11-20T23:59:50, 10 s before the end of that hour
    now = 1_795_305_600.0 - 10
    _put_journal("journal/2026-11-21T23/shardId-0/b-1.json", [_row(now, 1.0)])
    _put_journal("journal/2026-11-20T23/shardId-0/b-0.json", [_row(now - 86400, 3.0)])
    matrix = drift.recent_features(Settings.from_env(), now=now, rng=np.random.default_rng(0))
    assert sorted(matrix[:, 0].tolist()) == [1.0, 3.0]


def test_a_journal_expired_between_the_listing_and_the_read_is_skipped(aws, monkeypatch):
    _put_journal("journal/2026-11-22T00/shardId-0/b-1.json", [_row(NOW, 1.0)])
    _put_journal("journal/2026-11-22T00/shardId-0/b-gone.json", [_row(NOW, 2.0)])
    read = drift.stream.read_journal

    def expire_then_read(settings, key):   # the bucket's lifecycle rule deletes it after it was listed
        if key.endswith("b-gone.json"):
            boto3.client("s3", region_name="us-east-1").delete_object(Bucket="artifacts", Key=key)
        return read(settings, key)

    monkeypatch.setattr(drift.stream, "read_journal", expire_then_read)
    matrix = drift.recent_features(Settings.from_env(), now=NOW, rng=np.random.default_rng(0))
    assert matrix[:, 0].tolist() == [1.0]


def test_reading_stops_at_the_journal_that_fills_the_sample(aws, monkeypatch):
    for i in range(3):
        _put_journal(f"journal/2026-11-22T00/shardId-0/b-{i}.json", [_row(NOW - i, float(i))])
    reads = []
    read = drift.stream.read_journal
    monkeypatch.setattr(drift.stream, "read_journal", lambda settings, key: reads.append(key) or read(settings, key))
    # limit 2: one row per journal (2 // 50 = 0, at least 1); two journals fill the sample, the third is not read
    matrix = drift.recent_features(Settings.from_env(), limit=2, now=NOW, rng=np.random.default_rng(0))
    assert matrix.shape == (2, WIDTH) and len(reads) == 2
