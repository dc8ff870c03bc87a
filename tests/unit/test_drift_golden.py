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
