"""The optimizer package's parts one at a time, on small inputs worked out by hand (records, model, queueing,
policy, rollback): what test_optimizer.py checks end to end through fitted forests and moto, here each rule at its
boundary. Most tests fit nothing and run in milliseconds, so a mutation run (scripts/mutate.py optimizer) finds a
changed rule here first."""
import dataclasses
import math
import time
from datetime import datetime, timezone

import numpy as np
import pytest
from lambdakit import local_time_zone
from scipy import stats

from pipeline import store
from pipeline.batch_config import BatchConfig
from pipeline.optimizer import model, policy, queueing, records, rollback
from pipeline.settings import settings

NOON = 1_798_804_800.0          # 2027-01-01 12:00:00 UTC
NOW_ = NOON + 7.5


def _settings(**changes):
    return dataclasses.replace(settings(), **changes)


# ------------------------------------------------------------------------------------------------------ records
def test_record_targets_and_measured_cost():
    assert records.target_cost({"tunable_cost_per_event_usd": "2", "cost_per_event_usd": 3}) == 2.0
    assert records.target_cost({"cost_per_event_usd": "3"}) == 3.0
    assert records.wait_seconds({"wait_seconds": "1.5"}) == 1.5
    assert records.wait_seconds({}) == records.wait_seconds({"wait_seconds": None}) == 0.0
    assert records.wait_seconds({"wait_seconds": -2}) == 0.0
    assert records.processing_seconds({"latency_max": "2.0", "wait_seconds": 0.5}) == 1.5
    assert records.processing_seconds({"latency_max": 2.0, "wait_seconds": 3.0}) == 0.0
    rows = [{"events": 1, "tunable_cost_per_event_usd": 1.0, "cost_per_event_usd": 9.0},
            {"events": "3", "tunable_cost_per_event_usd": 2.0, "cost_per_event_usd": 9.0}]
    assert records.measured_cost(rows) == pytest.approx((1 * 1.0 + 3 * 2.0) / 4, rel=1e-12)
    assert records.measured_cost([]) is None
    assert records.measured_cost([{"events": 0, "cost_per_event_usd": 1.0}]) is None


def test_the_training_sample_keeps_the_newest_and_an_ordered_sample_of_the_older():
    rows = [{"i": i} for i in range(300)]
    assert records.training_sample(rows, limit=300) is rows
    sample = records.training_sample(rows, limit=150)
    assert len(sample) == 150 and sample[-100:] == rows[-100:]
    older = [r["i"] for r in sample[:50]]
    assert older == sorted(set(older)) and older[-1] < 200
    assert records.training_sample(rows, limit=150) == sample                   # seeded: the same every time
    assert records.training_sample(rows, limit=150, seed=1) != sample
    assert records.training_sample(rows, limit=299)[-100:] == rows[-100:]
    assert len(records.training_sample(rows, limit=299)) == 299
    assert len(records.training_sample(rows)) == 300                             # under MAX_TRAIN_RECORDS: all


def test_load_cost_records_reads_the_newest_of_each_slot_back_to_the_first_slot_of_the_window(aws, monkeypatch):
    """days=1, 12 per hour = 2 per 10-minute slot. now is 12:59:50: the window is the 144 slots ending at 13:00,
    the newest being 12:50-13:00 and the oldest 13:00-13:10 of the day before."""
    now = NOON + 3590
    end = NOON + 3600
    rows = [{"recorded_at": NOON + 3000 + k, "n": k} for k in range(5)]          # newest slot: 2 newest read
    rows += [{"recorded_at": end - 86400 + 1, "n": 10}, {"recorded_at": end - 86400 - 1, "n": 11}]
    rows += [{"recorded_at": end - 86400, "n": 9}]                                # the window's first second
    rows += [{"recorded_at": NOON + 3600 + 5, "n": 12}]                           # after the window
    for n, r in enumerate(rows):
        stamp = datetime.fromtimestamp(r["recorded_at"], tz=timezone.utc)
        store.put_item("cost", r | {"day": stamp.strftime("%Y-%m-%d"), "batch_key": f"{stamp.isoformat()}#b{n}"})
    limits, query = [], store.query
    monkeypatch.setattr(store, "query", lambda table, limit=None, **kw: limits.append(limit) or query(table, limit,
                                                                                                        **kw))
    read = records.load_cost_records(settings(), days=1, per_hour=12, now=now)
    assert [r["n"] for r in read] == [9, 10, 3, 4]
    # Query's Limit is an Integer of at least 1:
    # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Query.html#DDB-Query-request-Limit
    assert len(limits) == 144 and {(type(n), n) for n in limits} == {(int, 2)}
    read = records.load_cost_records(settings(), days=1, per_hour=6, now=now)   # 1 per slot: the newest
    assert [r["n"] for r in read] == [10, 4]


# ------------------------------------------------------------------------------------------------------ model
def test_feature_row_by_hand():
    r = {"events": 4, "arrival_rate": "2.5", "bytes": 800, "recorded_at": NOON + 30,
         "stage_seconds": {"process_stream": 0.8, "invoke_model": 0.4}}
    assert model.feature_row(r) == [4, 2.5, 200.0, 12, 0.2, 0.1]
    bare = {"events": 0, "arrival_rate": None, "bytes": 50, "recorded_at": NOON - 1}
    assert model.feature_row(bare) == [1, 0.0, 50.0, 11, 0.0, 0.0]
    matrix = model.feature_matrix([r, bare])
    assert matrix.dtype == float and matrix.shape == (2, len(model.FEATURES))
    with local_time_zone("Asia/Kolkata"):                  # the hour is UTC's, as the decision's (choose)
        assert model.feature_row(r)[3] == 12 and model.feature_matrix([bare])[0, 3] == 11


def test_the_bases():
    assert np.array_equal(model._per_batch_basis(np.array([0.0, 2.0])), [[1.0, 1.0], [0.5, 1.0]])
    assert np.array_equal(model._linear_basis(np.array([0.0, 2.0])), [[1.0, 0.0], [1.0, 2.0]])


def test_the_hybrid_recovers_a_physical_truth_and_keeps_its_terms_non_negative():
    events = np.repeat(np.arange(10.0, 110.0, 10.0), 6)
    x = np.column_stack([events, np.zeros((len(events), 5))])
    cost = model.Hybrid(model._per_batch_basis).fit(x, 3e-6 / events + 2e-7)   # tiny values: the scale matters
    assert cost.coef == pytest.approx([3e-6, 2e-7], rel=1e-6)
    assert cost.predict(np.array([[200.0, 0, 0, 0, 0, 0]])) == pytest.approx([3e-6 / 200 + 2e-7], rel=1e-4)
    assert cost.oob_score_ == pytest.approx(1.0, abs=1e-6)
    assert cost.oob_prediction_ == pytest.approx(3e-6 / events + 2e-7, rel=1e-4)
    assert cost.predict(x) == pytest.approx(3e-6 / events + 2e-7, rel=1e-4)
    falling = model.Hybrid(model._linear_basis).fit(x, 5.0 - 0.01 * events)
    assert falling.coef[1] == 0.0 and falling.coef[0] > 0                     # no negative time per event
    assert model.Hybrid(model._linear_basis).fit(x, 0.5 + 0.01 * events).coef == pytest.approx([0.5, 0.01])


def test_the_forest_learns_what_the_baseline_misses_and_its_oob_score_is_r2():
    rng = np.random.default_rng(4)
    events = rng.choice(np.arange(10.0, 210.0, 10.0), 300)
    hour = rng.integers(0, 24, 300).astype(float)
    x = np.column_stack([events, np.zeros(300), np.zeros(300), hour, np.zeros(300), np.zeros(300)])
    y = 0.2 + 0.001 * events + 0.3 * (hour >= 12) + rng.normal(0, 0.01, 300)   # slower in the afternoon
    fitted = model.Hybrid(model._linear_basis).fit(x, y)
    assert fitted.oob_score_ == pytest.approx(1 - np.sum((y - fitted.oob_prediction_) ** 2)
                                              / np.sum((y - y.mean()) ** 2), rel=1e-12)
    assert fitted.oob_score_ > 0.9
    afternoon = fitted.predict(np.array([[100.0, 0, 0, 15.0, 0, 0], [100.0, 0, 0, 3.0, 0, 0]]))
    assert afternoon[0] - afternoon[1] == pytest.approx(0.3, abs=0.05)
    assert afternoon[1] == pytest.approx(0.3, abs=0.1)
    again = model.Hybrid(model._linear_basis).fit(x, y)                          # the same forest every time
    assert list(again.oob_prediction_) == list(fitted.oob_prediction_)


def test_the_forest_settings():
    """60 trees, leaves of at least 3 records, out-of-bag predictions (the latency margin), a fixed seed (the same
    decision for the same records) and one thread (the retrain function's vCPU)."""
    params = model._forest().get_params()
    assert {k: params[k] for k in ("n_estimators", "min_samples_leaf", "oob_score", "random_state", "n_jobs")} == {
        "n_estimators": 60, "min_samples_leaf": 3, "oob_score": True, "random_state": 0, "n_jobs": 1}


def test_fit_models_process_stream_pace_and_margin():
    rows = [{"events": n, "bytes": 100 * n, "recorded_at": NOON + i, "arrival_rate": 10.0,
             "stage_seconds": {"process_stream": 0.05 + 0.002 * n, "invoke_model": 0.0},
             "tunable_cost_per_event_usd": 1e-6 / n, "cost_per_event_usd": 0,
             "latency_max": 0.3 + 0.001 * n + (0.2 if i == 7 else 0.0), "wait_seconds": 0.1}
            for i, n in enumerate([10, 20, 30, 40, 50] * 8)]
    fitted = model.fit_models(rows)
    assert fitted.ps_fixed == pytest.approx(0.05) and fitted.ps_per_event == pytest.approx(0.002)
    assert fitted.x.shape == (40, 6) and 0.0 < fitted.margin < 0.2
    falling = model.fit_models([r | {"stage_seconds": {"process_stream": 0.2 - 0.002 * r["events"]}} for r in rows])
    assert falling.ps_per_event == 0.0 and falling.ps_fixed == pytest.approx(0.2)   # no negative time per event
    offset = model.fit_models([r | {"stage_seconds": {"process_stream": 0.002 * r["events"] - 0.01}} for r in rows])
    assert offset.ps_fixed == 0.0 and offset.ps_per_event == pytest.approx(0.002)    # nor a negative fixed time


# ------------------------------------------------------------------------------------------------------ queueing
def test_arrival_time99_is_the_gamma_quantile():
    got = queueing.arrival_time99(np.array([-1.0, 0.0, 1.0, 5.0]), 2.0)
    assert got == pytest.approx([0.0, 0.0, stats.gamma.ppf(0.99, 1) / 2, stats.gamma.ppf(0.99, 5) / 2], rel=1e-9)


def test_predicted_batch_with_no_load_and_beyond_keeping_up():
    events, wait, stable = queueing.predicted_batch(np.array([10, 20]), 2, 0.0, 0.1, 0.001)
    assert list(events) == [1, 1] and list(wait) == [2.99, 2.99] and list(stable) == [True, True]
    # 1.5 x 2 events/s x 1/3 s per event = 1: even an endless batch cannot keep up (the bound is inclusive)
    events, wait, stable = queueing.predicted_batch(np.array([10, 20]), 0, 2.0, 0.1, 1 / 3)
    assert list(events) == [10, 20] and list(wait) == [math.inf, math.inf] and list(stable) == [False, False]


def test_predicted_batch_of_a_busy_shard_with_no_window():
    # 100 events/s, 0.1 s per invocation + 1 ms per event: the equilibrium batch e = 100 x (0.1 + 0.001 e) = 11.1,
    # whole records: 11; the oldest event waits one cycle of an 11-event batch
    events, wait, stable = queueing.predicted_batch(np.array([1000]), 0, 100.0, 0.08, 0.001)
    assert list(events) == [11] and wait[0] == pytest.approx(0.1 + 0.001 * 11) and stable[0]


def test_predicted_batch_filled_within_the_window():
    # no time per event: the cycle is 0.1 s, 10 records gathered (plus the idle share), the rest at the p99 fill
    gathered = 100 * 0.1 + math.exp(-10) * 100 * 0.5
    events, wait, _ = queueing.predicted_batch(np.array([20]), 1, 100.0, 0.08, 0.0)
    assert events[0] == 20
    assert wait[0] == pytest.approx(0.1 + stats.gamma.ppf(0.99, 20 - gathered) / 100, rel=1e-9)


def test_predicted_batch_of_an_idle_shard_waits_for_the_poll_then_the_window():
    # 0.5 events/s: the shard idles (p = exp(-0.05)); the poll wait at the 1 % quantile, then the whole window
    events, wait, stable = queueing.predicted_batch(np.array([100]), 1, 0.5, 0.08, 0.0)
    p_idle = math.exp(-0.05)
    assert events[0] == 1 and stable[0]
    assert wait[0] == pytest.approx((1 - 0.01 / p_idle) + 1, rel=1e-9)


def test_the_shard_keeps_up_with_headroom():
    # threshold = 1.5 x 10 x 0.1 / (1 - 1.5 x 10 x 0.02) = 1.5 / 0.7 = 2.14
    _, _, stable = queueing.predicted_batch(np.array([2, 3]), 0, 10.0, 0.08, 0.02)
    assert list(stable) == [False, True]


def test_slot_rates_by_hand():
    rows = [{"recorded_at": 600.0, "events": 3, "arrival_rate": 2.0},      # 3 events over 1.5 s = 4 gaps over 2 s
            {"recorded_at": 1199.9, "events": 1, "arrival_rate": 4.0},     # one event: no gap to measure
            {"recorded_at": 1200.0, "events": 1, "arrival_rate": 4.0},     # next slot: only a one-event batch
            {"recorded_at": 1300.0, "events": 5, "arrival_rate": 0}]       # no rate: left out
    assert queueing.slot_rates(rows) == [(600.0, 0, 1.5, 2), (1200.0, 0, 4.0, 1)]
    assert queueing.slot_rates([{"recorded_at": NOON + 601, "events": 2, "arrival_rate": 1.0}]) == [
        (NOON + 600, 12, 2 / 3, 1)]
    # a batch counts in the slot its oldest event arrived in: recorded 1 s into 12:10 after 1.5 s, it arrived in 12:00
    late = {"recorded_at": NOON + 601, "events": 2, "arrival_rate": 1.0, "latency_max": 1.5}
    assert queueing.slot_rates([late]) == [(NOON, 12, 2 / 3, 1)]
    with local_time_zone("Asia/Kolkata"):
        assert queueing.slot_rates([late]) == [(NOON, 12, 2 / 3, 1)]
    assert records.arrived_at(late) == NOON + 599.5
    assert records.arrived_at(late | {"latency_max": None}) == NOON + 601


def test_now_follows_the_profile_within_x1_5_of_the_range_its_hours_saw():
    # yesterday 11h at 10 and 20 events/s (10 records a slot); now three slots of 11h today
    history = _slot_rows(NOON - 86400 - 3600, 3, 10, 10.0) + _slot_rows(NOON - 86400 - 1800, 3, 10, 20.0)
    def recent(rate):
        return _slot_rows(NOON - 1800, 3, 1, rate)
    assert queueing.follows_profile(history + recent(6.67)) and queueing.follows_profile(history + recent(30.0))
    assert not queueing.follows_profile(history + recent(6.66))          # 10 / 1.5 = 6.667
    assert not queueing.follows_profile(history + recent(30.01))
    assert not queueing.follows_profile(_slot_rows(NOON - 86400 - 3600, 1, 29, 10.0) + recent(10.0))  # 29 records
    assert not queueing.follows_profile(recent(10.0)) and not queueing.follows_profile([])
    # now p10/p100 need only keep up while it follows the profile and the hour ahead has a history
    rates = {"now p10": 10.0, "now p100": 12.0, "this hour p10": 200.0, "this hour p100": 300.0}
    assert queueing.keep_up_only(history + recent(12.0), rates) == {"now p10", "now p100"}
    assert queueing.keep_up_only(history + recent(31.0), rates) == set()
    assert queueing.keep_up_only(history + recent(12.0), {"now p10": 10.0, "now p100": 12.0}) == set()


def test_decision_hours_at_the_grace_boundary():
    assert queueing.decision_hours(NOON + 299) == [12]
    assert queueing.decision_hours(NOON + 300) == [12, 13]


def _slot_rows(start: float, slots: int, per_slot: int, rate: float) -> list[dict]:
    return [{"recorded_at": start + 600 * s + k, "events": 1, "arrival_rate": rate}
            for s in range(slots) for k in range(per_slot)]


def test_rate_scenarios_use_an_hour_of_history_only_with_enough_records():
    now = NOON + 10
    recent = _slot_rows(NOON - 1800, 3, 1, 5.0)[:2] + _slot_rows(NOON - 600, 1, 1, 7.0)
    enough = _slot_rows(NOON - 86400, 3, 10, 20.0)                              # 30 records at 12h yesterday
    rates = queueing.rate_scenarios(enough + recent, now)
    assert rates == pytest.approx({"now p10": 5.0, "now p100": 7.0, "this hour p10": 20.0, "this hour p100": 20.0})
    short = _slot_rows(NOON - 86400, 1, 29, 20.0)
    assert set(queueing.rate_scenarios(short + recent, now)) == {"now p10", "now p100"}
    assert queueing.rate_scenarios([], now) == {"now p10": 0.0, "now p100": 0.0}
    later = queueing.rate_scenarios(_slot_rows(NOON - 86400 + 3600, 3, 10, 30.0) + recent, NOON + 1200)
    assert later["next hour p100"] == 30.0 and "this hour p10" not in later


# ------------------------------------------------------------------------------------------------------ policy
def test_fallback_keeps_the_configured_setting():
    d = policy.fallback(_settings(batch_size=300, batching_window_seconds=2, invoke_chunk_size=100), "few", 7)
    assert (d.batch_size, d.batching_window_seconds, d.invoke_chunk_size, d.records, d.status) == (
        300, 2, 100, 7, "fallback")
    assert d.reason == "few; using the configured default BatchSize 300"
    assert policy.fallback(_settings(batch_size=50, invoke_chunk_size=100), "x", 0).invoke_chunk_size == 50


def test_step_bound_from_the_batches_the_setting_reaches():
    s = _settings(min_batch_size=10, max_batch_size=500)
    made = [{"events": e, "configured_batch_size": 200, "configured_window_seconds": 1} for e in range(41, 61)]
    # p90 of 41..60 = 58.1: low = int(58.1 / 2) = 29; high = 200 x 2
    assert policy.step_bound(made, s, 200, 1) == (29, 400)
    assert policy.step_bound(made, s, 200, 0) == (100, 400)                 # another window: not in force
    assert policy.step_bound(made, s, 300, 1) == (150, 500)                 # another size: not in force
    unknown_window = [{"events": 60, "configured_batch_size": 200}]         # older records: the window in force
    assert policy.step_bound(unknown_window, s, 200, 1) == (30, 400)
    assert policy.step_bound([{"events": 900, "configured_batch_size": 20}], s, 20, 1) == (10, 40)
    old = [{"events": 8, "configured_batch_size": 200, "configured_window_seconds": 1}]
    assert policy.step_bound(old + [{"events": 1}] * 100, s, 200, 1) == (100, 400)  # only the newest 100 count


def test_candidate_grid_leaves_out_rejected_sizes_and_ends_with_the_setting_kept():
    s = _settings(min_batch_size=16, max_batch_size=24)
    c = policy.candidate_grid(s, 20, 1, {}, (99, 3))
    assert list(c.size) == [16, 16, 17, 17, 18, 18, 19, 19, 20, 20, 21, 21, 22, 22, 23, 23, 24, 24, 99]
    assert list(c.window) == [0, 1] * 9 + [3] and list(c.choosable) == [True] * 18 + [False]
    c = policy.candidate_grid(s, 20, 0, {20: 1.0}, (20, 0))       # +-10 % of 20 = 18..22 out (inclusive)
    assert list(c.size) == [16, 17, 23, 24, 20]
    c = policy.candidate_grid(_settings(min_batch_size=10, max_batch_size=11), 10, 0, {10: 1.0}, (10, 0))
    assert list(c.size) == [10, 10] and list(c.choosable) == [True, False]     # nothing left: the current size


class _Stub:
    def __init__(self, f):
        self.predict = f


def test_predict_averages_the_cost_and_takes_the_worst_latency_over_the_scenarios():
    c = policy.Candidates(np.array([20, 40, 40]), np.array([0, 0, 1]), np.array([True, True, False]))
    fitted = model.FittedModels(np.zeros((1, 6)), _Stub(lambda g: g[:, 1] * 1.0), _Stub(lambda g: g[:, 0] * 0.0),
                                margin=0.5, ps_fixed=0.08, ps_per_event=0.0)
    workload = np.array([0.0, 0.0, 200.0, 12.0, 0.001, 0.0])
    p = policy.predict(c, {"now p10": 0.0, "now p100": 100.0}, workload, fitted, slo=0.65)
    assert list(p.cost) == [50.0, 50.0, 50.0]                                    # mean of the rate column
    # at 100 events/s a busy shard gathers 10 events per 0.1 s cycle: 10 with no window, a full 40 with a 1 s one
    assert list(p.events_now) == [10, 10, 40]
    assert p.latency[0] == pytest.approx(0.5 + 0.99)                             # the idle scenario is worse
    assert list(p.ok) == [False, False, False] and list(p.keeps_up) == [True, True, True]
    p = policy.predict(c, {"now p100": 100.0}, workload, fitted, slo=0.65)
    assert p.latency[0] == pytest.approx(0.1 + 0.5) and p.latency[2] > 1.0             # the 1 s window's fill
    assert list(p.ok) == [True, True, False] and list(p.cost) == [100.0] * 3
    # 1.5 x 100 events/s x 0.1 s = 15: a BatchSize of 10 does not keep up (no scenario can make it)
    small = policy.Candidates(np.array([10, 20]), np.array([0, 0]), np.array([True, False]))
    p = policy.predict(small, {"now p10": 0.0, "now p100": 100.0}, workload, fitted, slo=5.0)
    assert list(p.keeps_up) == [False, True] and list(p.ok) == [False, True]
    # a keep-up-only scenario counts in neither the cost nor the latency: the idle one's 1.49 s leaves 0.6 s
    p = policy.predict(c, {"now p10": 0.0, "now p100": 100.0}, workload, fitted, slo=0.65, keep_up_only={"now p10"})
    assert list(p.cost) == [100.0] * 3 and p.latency[0] == pytest.approx(0.1 + 0.5) and list(p.ok) == [True, True,
                                                                                                     False]
    # ... but whether it keeps up does: 10 events/batch cannot keep up at 100/s (as above), whichever is judged
    p = policy.predict(small, {"now p10": 0.0, "now p100": 100.0}, workload, fitted, slo=5.0,
                       keep_up_only={"now p100"})
    assert list(p.keeps_up) == [False, True] and list(p.ok) == [False, True] and list(p.events_now) == [10, 10]
    # every scenario counts, in any order: kept up with at all of them, the cost the mean over the judged ones
    p = policy.predict(small, {"now p100": 100.0, "now p10": 20.0}, workload, fitted, slo=5.0)
    assert list(p.keeps_up) == [False, True] and list(p.cost) == [60.0, 60.0]


def _cands(sizes, windows, choosable=None):
    n = len(sizes)
    return policy.Candidates(np.array(sizes), np.array(windows),
                             np.array(choosable if choosable is not None else [True] * (n - 1) + [False]))


def _preds(ok, keeps_up, cost, latency):
    return policy.Predictions(np.array(ok), np.array(keeps_up), np.array(cost, dtype=float),
                              np.array(latency, dtype=float), np.zeros(len(ok)))


def test_select_the_cheapest_in_the_bound_nearest_the_current_size_then_the_shorter_window():
    c = _cands([10, 20, 20, 30, 40, 20], [0, 1, 0, 0, 0, 0])
    p = _preds([True] * 6, [True] * 6, [1.0, 1.0000005, 1.0000005, 1.0, 0.5, 0.1], [0.1] * 6)
    assert policy.select(c, p, 10, 30, current=20) == (2, "cost", "in bound")   # 1e-6 relative: equally cheap
    assert policy.select(c, p, 10, 30, current=30) == (3, "cost", "in bound")
    p = _preds([True] * 6, [True] * 6, [1.0, 1.000002, 1.000002, 1.0, 0.5, 0.1], [0.1] * 6)
    assert policy.select(c, p, 10, 30, current=20) == (0, "cost", "in bound")   # 2e-6 dearer: not equal
    assert policy.select(c, p, 10, 40, current=20)[0] == 4                       # the bound is inclusive
    assert policy.select(c, p, 20, 30, current=20)[0] == 3
    # the setting kept (the last) is predicted to break the SLO: the move is made for the SLO, not judged on cost
    p = _preds([True] * 5 + [False], [True] * 6, [1.0, 1.000002, 1.000002, 1.0, 0.5, 0.1], [0.1] * 6)
    assert policy.select(c, p, 10, 30, current=20) == (0, "slo", "in bound")
    # free candidates (a predicted cost of exactly 0): the cheapest are all equal, the nearest the current wins
    p = _preds([True] * 6, [True] * 6, [0.0] * 6, [0.1] * 6)
    assert policy.select(c, p, 10, 30, current=30) == (3, "cost", "in bound")


def test_select_beyond_the_bound_takes_the_cheapest_largest_size():
    c = _cands([10, 20, 30, 30, 50], [0, 0, 1, 0, 0])
    p = _preds([False, True, True, True, True], [True] * 5, [9.0, 2.0, 2.0000001, 2.0, 0.1], [1.0] * 5)
    assert policy.select(c, p, 10, 10, current=10) == (3, "slo", "beyond bound")
    assert policy._cheapest(np.array([1, 2, 3]), p.cost, c.size, c.window) == 3


def test_cheapest_counts_as_equal_within_a_millionth():
    sizes, windows, idx = np.array([10, 20, 30]), np.array([0, 0, 0]), np.array([0, 1, 2])
    assert policy._cheapest(idx, np.array([2.0, 3.0, 9.0]), sizes, windows) == 0          # dearer: not equal
    assert policy._cheapest(idx, np.array([2.0, 2.0000015, 9.0]), sizes, windows) == 1    # within 2e-6: equal
    assert policy._cheapest(idx, np.array([2.0, 2.0000025, 9.0]), sizes, windows) == 0
    assert policy._cheapest(idx, np.array([0.0, 0.0, 1.0]), sizes, windows) == 1          # equal at zero too
    assert policy._cheapest(np.array([0, 1]), np.array([5.0, 5.0, 1.0]), sizes, windows) == 1  # among the indices


def test_select_when_nothing_holds_the_slo_or_nothing_keeps_up():
    c = _cands([10, 20, 30, 30, 500], [0, 0, 0, 1, 0])
    p = _preds([False] * 5, [False, True, True, False, True], [1.0] * 5, [5.0, 4.0, 3.0, 1.0, 0.1])
    assert policy.select(c, p, 10, 30, current=10) == (2, "slo", "lowest latency")
    p = _preds([False] * 5, [False] * 4 + [True], [1.0] * 5, [9.0] * 5)
    assert policy.select(c, p, 10, 30, current=10) == (2, "slo", "largest")   # the largest choosable, no window


def test_explain_each_rule():
    s = _settings(min_batch_size=10, max_batch_size=500, latency_slo_seconds=2.0)
    rates = {"now p10": 1.04, "now p100": 20.0}
    assert policy.explain("in bound", s, 50, 200, 2, 0.1234, rates) == (
        "cheapest predicted tunable cost per event among BatchSize 50..200 x window 0..2s whose predicted p99 latency"
        " (wait + processing + 0.123s out-of-bag error) is within the 2s SLO and whose throughput keeps up, at arrival"
        " rates per shard (now p10 1.0, now p100 20.0 events/s)")
    assert policy.explain("beyond bound", s, 50, 200, 2, 0.1, rates) == (
        "no (BatchSize, window) in the step bound 50..200 x 0..2s is predicted within the 2s SLO at arrival rates per"
        " shard (now p10 1.0, now p100 20.0 events/s); moved beyond it to the cheapest setting that is")
    assert policy.explain("lowest latency", s, 50, 200, 2, 0.1, rates) == (
        "no (BatchSize, window) in 10..500 x 0..2s is predicted within the 2s SLO at arrival rates per shard (now p10"
        " 1.0, now p100 20.0 events/s); chose the lowest predicted latency among those that keep up with the load")
    assert policy.explain("largest", s, 50, 200, 2, 0.1, rates) == (
        "no BatchSize in 10..500 keeps up with the load at arrival rates per shard (now p10 1.0, now p100 20.0"
        " events/s); chose the largest with no window")


def test_cost_curve_samples_about_8_points_of_the_chosen_window_and_the_chosen_one():
    sizes = list(range(10, 30))
    c = _cands(sizes * 2 + [99], [0] * 20 + [1] * 20 + [0])
    p = _preds([True] * 41, [True] * 41, np.arange(41.0), [0.5] * 40 + [math.inf])
    p.latency[3] = math.inf
    p.events_now = np.arange(41.0) + 0.5
    curve = policy.cost_curve(c, p, 3)
    assert list(curve) == ["10", "12", "13"] + [str(s) for s in range(14, 30, 2)]
    assert curve["13"] == {"events": 3.5, "cost_per_event": 3.0, "latency_p99": None, "keeps_up": True,
                           "feasible": True}
    assert list(policy.cost_curve(c, p, 25)) == ["10", "12", "14", "15"] + [str(s) for s in range(16, 30, 2)]
    few = policy.cost_curve(_cands([10, 11, 12], [0, 0, 0]), _preds([True] * 3, [True] * 3, [1.0] * 3,
                                                                     [1.0] * 3), 0)
    assert list(few) == ["10", "11"]                                                 # fewer than 8: every one


# ------------------------------------------------------------------------------------------------------ rollback
def _batches(n, size, at, rate=10.0, cost=1.0, events=None):
    return [{"recorded_at": at + i, "configured_batch_size": size, "arrival_rate": rate, "events": events or size,
             "tunable_cost_per_event_usd": cost, "cost_per_event_usd": cost} for i in range(n)]


CHANGE = {"applied_at": NOON, "batch_size": 200, "previous_batch_size": 100}


def test_evaluate_change_needs_min_compare_matched_batches_on_each_side():
    before, after = _batches(20, 100, NOON - 100), _batches(19, 200, NOON)
    verdict = rollback.evaluate_change(before + after, CHANGE, now=NOON + 3 * 3600)
    assert verdict == {"batches_before": 20, "batches_after": 19, "matched_before": 20, "matched_after": 19,
                       "from": 100, "to": 200, "verdict": "pending"}
    assert rollback.evaluate_change(before + after, CHANGE, now=NOON + 3 * 3600 + 1)["verdict"] == "inconclusive"
    other_load = _batches(20, 200, NOON, rate=16.0)                       # bin 6 (10/s is bin 5): not comparable
    assert rollback.evaluate_change(before + other_load, CHANGE, now=NOON)["matched_after"] == 0
    near_load = _batches(20, 200, NOON, rate=11.0)                        # still bin 5
    assert rollback.evaluate_change(before + near_load, CHANGE, now=NOON)["verdict"] == "kept"
    wrong_size = _batches(20, 150, NOON)                                  # not the new setting's batches
    assert rollback.evaluate_change(before + wrong_size, CHANGE, now=NOON)["batches_after"] == 0
    old_after = _batches(20, 100, NOON)                                   # the old size after the change: not before
    assert rollback.evaluate_change(old_after + after, CHANGE, now=NOON)["batches_before"] == 0


def test_evaluate_change_rolls_back_only_above_the_tolerance():
    before = _batches(20, 100, NOON - 100, cost=1.0)
    kept = rollback.evaluate_change(before + _batches(20, 200, NOON, cost=1.05), CHANGE, now=NOON)
    assert kept["verdict"] == "kept" and kept["change"] == pytest.approx(0.05)
    assert kept["cost_per_event_before"] == 1.0 and kept["cost_per_event_after"] == 1.05
    dearer = rollback.evaluate_change(before + _batches(20, 200, NOON, cost=1.06), CHANGE, now=NOON)
    assert dearer["verdict"] == "rollback"


def test_a_setting_that_broke_the_slo_is_no_baseline_to_roll_back_to():
    # 20 matched batches before: 1 over the 2 s SLO (95 % within) -> kept although 6 % dearer; none over -> rollback
    slow = [r | {"latency_max": 2.5 if i == 0 else 2.0} for i, r in enumerate(_batches(20, 100, NOON - 100))]
    dearer = _batches(20, 200, NOON, cost=1.06)
    verdict = rollback.evaluate_change(slow + dearer, CHANGE, now=NOON, slo=2.0)
    assert verdict["verdict"] == "kept" and verdict["slo_share_before"] == 0.95
    assert rollback.evaluate_change(slow + dearer, CHANGE, now=NOON, slo=2.5)["verdict"] == "rollback"
    assert rollback.evaluate_change(slow + dearer, CHANGE, now=NOON)["slo_share_before"] == 1.0    # no SLO given
    assert rollback.slo_share([], 2.0) == 1.0 and rollback.slo_share(slow[:4], 2.0) == 0.75
    # 99 % is enough: 1 of 100 over
    held = [r | {"latency_max": 3.0 if i == 0 else 1.0} for i, r in enumerate(_batches(100, 100, NOON - 200))]
    assert rollback.evaluate_change(held + dearer, CHANGE, now=NOON, slo=2.0)["verdict"] == "rollback"


def test_evaluate_change_weighs_the_rate_bins_by_the_new_settings_events():
    # bin of 10/s: before 1.0, after 1.0; bin of 100/s: before 1.0, after 2.0, with 3x the events after the change
    rows = (_batches(20, 100, NOON - 100, rate=10.0) + _batches(20, 100, NOON - 50, rate=100.0)
            + _batches(20, 200, NOON, rate=10.0, events=10) + _batches(20, 200, NOON + 50, rate=100.0, cost=2.0,
                                                                       events=30)
            + _batches(5, 200, NOON + 100, rate=0.0, cost=50.0))            # no rate: bin -99, unmatched
    verdict = rollback.evaluate_change(rows, CHANGE, now=NOON)
    assert verdict["cost_per_event_after"] == pytest.approx((10 * 1.0 + 30 * 2.0) / 40)
    assert verdict["cost_per_event_before"] == pytest.approx(1.0) and verdict["matched_after"] == 40


def test_record_change_starts_the_judging_of_a_new_size_only():
    d = policy.Decision(200, 1, 100, "r", 10, purpose="slo")
    assert rollback.record_change({"x": 1}, d, 100, 2, NOW_) == {"x": 1, "last_change": {
        "applied_at": NOW_, "batch_size": 200, "previous_batch_size": 100, "previous_window_seconds": 2,
        "purpose": "slo", "evaluated": False}}
    assert rollback.record_change({"x": 1}, d, 200, 0, NOW_) == {"x": 1}
    assert rollback.record_change({"x": 1}, dataclasses.replace(d, status="rollback"), 100, 2, NOW_) == {"x": 1}



def test_decide_keeps_a_move_made_for_the_slo_without_judging_it_and_drops_expired_rejections():
    config = BatchConfig(applied=True, batch_size=200, batching_window_seconds=0, invoke_chunk_size=100,
                         optimizer_state={"last_change": CHANGE | {"purpose": "slo"},
                                          "rejected": {"300": NOON + 1, "400": NOON}})
    decision, models, state = rollback.decide([], _settings(batch_size=100), config, NOON)
    assert decision.status == "fallback" and models is None
    assert state["rejected"] == {"300": NOON + 1}
    assert state["last_change"]["evaluated"] is True
    assert state["last_evaluation"] == {"at": NOON, "verdict": "kept", "reason": "made to hold the SLO: not judged "
                                        "on cost", "from": 100, "to": 200}
    evaluated = BatchConfig(applied=True, batch_size=200, batching_window_seconds=0, invoke_chunk_size=100,
                            optimizer_state={"last_change": CHANGE | {"evaluated": True}})
    assert "last_evaluation" not in rollback.decide([], _settings(), evaluated, NOON)[2]


def _surface(sizes, n, start, configured=None, cost=None, rate=400.0):
    """Cost records that train the models: cost per event a bowl with its floor at 240 events (or ``cost``)."""
    return [{"batch_size": size, "events": size, "bytes": 200 * size, "recorded_at": start + i, "arrival_rate": rate,
             "configured_batch_size": configured or size,
             "stage_seconds": {"process_stream": 0.001 * size, "invoke_model": 0.0002 * size},
             "cost_per_event_usd": 9.0, "tunable_cost_per_event_usd": cost or 1e-6 * (1 + ((size - 240) / 200) ** 2),
             "latency_max": 0.2 + size / 1000} for i, size in enumerate(sizes[i % len(sizes)] for i in range(n))]


def _config(applied=True, chunk=50, rollbacks=None):
    state = {"last_change": {"applied_at": NOON - 500, "batch_size": 400, "previous_batch_size": 200,
                             "previous_window_seconds": 1, "purpose": "cost", "evaluated": False},
             "rejected": {"50": NOON + 10, "70": NOON}}          # 70: expired at the retrain
    if rollbacks is not None:
        state["rollbacks"] = rollbacks
    return BatchConfig(applied=applied, batch_size=400, batching_window_seconds=1, invoke_chunk_size=chunk,
                       optimizer_state=state)


TRAIN = _surface(list(range(15, 501, 30)), 200, NOON - 7200)


def test_a_young_change_waits_with_the_setting_in_force():
    rows = TRAIN + _surface([200], 20, NOON - 1000) + _surface([400], 19, NOON - 400)
    decision, models, state = rollback.decide(rows, _settings(invoke_chunk_size=100), _config(), NOON)
    assert (decision.batch_size, decision.batching_window_seconds, decision.invoke_chunk_size, decision.status) == (
        400, 1, 50, "waiting") and models is None
    assert decision.reason == ("waiting for 20 batches under BatchSize 400 and under 200 before judging the last "
                               "change (have 19 and 20)") and decision.records == len(rows)
    assert state["rejected"] == {"50": NOON + 10} and state["last_change"]["evaluated"] is False
    assert "last_evaluation" not in state
    fresh, _, _ = rollback.decide(rows, _settings(invoke_chunk_size=100), _config(applied=False), NOON)
    assert fresh.invoke_chunk_size == 100                        # not yet applied: the configured chunk, <= BatchSize


def test_a_dearer_change_is_rolled_back_to_the_setting_before():
    rows = TRAIN + _surface([200], 20, NOON - 1000, cost=1e-6) + _surface([400], 20, NOON - 400, cost=1.3e-6)
    earlier = [{"n": k} for k in range(10)]
    decision, models, state = rollback.decide(rows, _settings(invoke_chunk_size=100), _config(rollbacks=earlier),
                                              NOON)
    assert (decision.batch_size, decision.batching_window_seconds, decision.invoke_chunk_size, decision.status) == (
        200, 1, 100, "rollback") and models is None and decision.records == len(rows)
    reason = ("measured tunable cost per event rose 30.0% (1.000e-06 -> 1.300e-06 USD over 20 / 20 batches) after "
              "BatchSize 200 -> 400; rolled back")
    assert decision.reason == reason
    assert state["rejected"] == {"50": NOON + 10, "400": NOON + 24 * 3600}
    assert state["rollbacks"][:9] == earlier[1:] and state["rollbacks"][-1]["reason"] == reason
    assert state["rollbacks"][-1]["at"] == NOON and state["rollbacks"][-1]["verdict"] == "rollback"
    assert state["last_change"]["evaluated"] is True and state["last_change"]["evaluation"]["verdict"] == "rollback"
    assert state["last_evaluation"]["at"] == NOON and state["last_evaluation"]["to"] == 400


def test_a_rollback_does_not_restore_a_setting_that_would_break_the_slo_now():
    # 1 event/s now: BatchSize 200 with a 1 s window never fills, so its first record waits up to a poll and then
    # the whole window: not within a 2 s SLO
    rows = (_surface(list(range(15, 501, 30)), 200, NOON - 7200, rate=1.0)
            + _surface([200], 20, NOON - 1000, cost=1e-6, rate=1.0)
            + _surface([400], 20, NOON - 400, cost=1.3e-6, rate=1.0))
    decision, models, state = rollback.decide(rows, _settings(latency_slo_seconds=2.0), _config(), NOON)
    assert decision.status == "trained" and models is not None and decision.batch_size != 200
    assert decision.reason.startswith(
        "measured tunable cost per event rose 30.0% (1.000e-06 -> 1.300e-06 USD over 20 / 20 batches) after BatchSize"
        " 200 -> 400; BatchSize 200 with a 1s window is not predicted to hold the SLO now, so not restored; ")
    assert "excluded after rollback: [50, 400]" in decision.reason
    assert state["rejected"]["400"] == NOON + 24 * 3600 and state["rollbacks"][-1]["verdict"] == "rollback"


def test_save_models_writes_the_pickle_and_the_metrics_under_the_time(aws):
    """(numpy scalars other than float64 are written as floats)"""
    import json
    import pickle

    import boto3

    from pipeline.optimizer import apply

    decision = policy.Decision(200, 1, 100, "why", 42, r2_cost=0.9, r2_latency=0.8, latency_margin_seconds=0.05)
    with local_time_zone("America/New_York"):            # the key is in UTC whatever the machine's time zone
        key = apply.save_models(settings(), {"cost": "c"}, decision, NOON + 61.5)
    assert key == "optimizer/20270101T120101Z/model.pkl"
    s3 = boto3.client("s3")
    saved = pickle.loads(s3.get_object(Bucket="artifacts", Key=key)["Body"].read())
    assert saved == {"models": {"cost": "c"}, "decision": dataclasses.asdict(decision)}
    metrics = s3.get_object(Bucket="artifacts", Key="optimizer/20270101T120101Z/metrics.json")
    assert metrics["ContentType"] == "application/json"
    assert json.loads(metrics["Body"].read()) == {
        "features": list(model.FEATURES), "records": 42, "r2_cost_oob": 0.9, "r2_latency_oob": 0.8,
        "latency_margin_seconds": 0.05, "decision": dataclasses.asdict(decision)}
    odd = dataclasses.replace(decision, workload={"rate": np.float32(0.5), "events": np.int64(3)})
    key = apply.save_models(settings(), {}, odd, NOON)
    metrics = json.loads(s3.get_object(Bucket="artifacts", Key=key.replace("model.pkl", "metrics.json"))["Body"].read())
    assert metrics["decision"]["workload"] == {"rate": 0.5, "events": 3.0}


def test_choose_too_little_data_at_the_minimums():
    s = _settings(batch_size=100)
    three_sizes = _surface([100, 200, 300], 30, NOON - 600)
    assert policy.choose(three_sizes, s, current=100, now=NOON)[0].status == "trained"
    decision, models = policy.choose(three_sizes[:29], s, current=100, now=NOON)
    assert models is None and decision.reason == (
        "too little data: 29 cost records over 3 batch sizes (need 30 over 3); using the configured default "
        "BatchSize 100")
    empty = [r | {"events": 0} for r in three_sizes]                          # empty batches are not records
    assert policy.choose(three_sizes[:29] + empty, s, current=100, now=NOON)[0].records == 29
    two_sizes = _surface([100, 200], 40, NOON - 600)
    assert policy.choose(two_sizes, s, current=100, now=NOON)[0].reason.startswith(
        "too little data: 40 cost records over 2 batch sizes")


def test_choose_composes_the_parts():
    """choose = fit_models, the workload now, rate_scenarios, step_bound, candidate_grid, predict, select, explain,
    cost_curve, wired as documented; each part is tested above."""
    now = NOON + 5
    rows = TRAIN[:100] + [r | {"bytes": 300 * r["events"]} for r in TRAIN[100:]]   # the newest 100: 300 B/event
    s = _settings(invoke_chunk_size=60, latency_slo_seconds=2.5, batching_window_seconds=1, min_batch_size=10,
                  max_batch_size=500)
    rejected = {"240": now + 1, "100": now}                                    # 100's rejection has just expired
    decision, models = policy.choose(rows, s, current=200, rejected=rejected, now=now)
    fitted = model.fit_models(rows)
    assert models["features"] == model.FEATURES and list(models["cost"].coef) == list(fitted.cost.coef)
    assert list(models["latency"].coef) == list(fitted.latency.coef)
    assert (decision.r2_cost, decision.r2_latency, decision.latency_margin_seconds) == (
        fitted.cost.oob_score_, fitted.latency.oob_score_, fitted.margin)
    workload = np.median(fitted.x[-100:], axis=0)
    workload[3] = 12
    rates = queueing.rate_scenarios(rows, now)
    assert decision.workload == {"arrival_rate": 400.0, "bytes_per_event": 300.0, "hour": 12.0,
                                 "stream_seconds_per_event": 0.001, "model_seconds_per_event": workload[5],
                                 "rates": rates, "process_stream_fixed_seconds": fitted.ps_fixed,
                                 "process_stream_seconds_per_event": fitted.ps_per_event,
                                 "predicted_events_per_batch": decision.workload["predicted_events_per_batch"]}
    low, high = policy.step_bound(rows, s, 200, 1)
    c = policy.candidate_grid(s, 200, 2, {240: now + 1}, (200, 1))
    p = policy.predict(c, rates, workload, fitted, 2.5)
    best, purpose, rule = policy.select(c, p, low, high, 200)
    assert (decision.batch_size, decision.batching_window_seconds, decision.purpose) == (
        int(c.size[best]), int(c.window[best]), purpose)
    assert decision.invoke_chunk_size == min(decision.batch_size, 60) and decision.records == 200
    assert decision.reason == policy.explain(rule, s, low, high, 2, fitted.margin, rates) + (
        "; excluded after rollback: [240]")
    assert decision.predicted_cost_per_event == p.cost[best] and decision.predicted_latency == p.latency[best]
    assert decision.workload["predicted_events_per_batch"] == p.events_now[best]
    assert decision.candidates == policy.cost_curve(c, p, best) and decision.keep_holds_slo is bool(p.ok[-1])
    kept = policy.choose(rows, s, current=200, now=now, keep=(10, 2))[0]
    assert kept.keep_holds_slo is False                                          # 10 cannot keep up with 400/s


def test_choose_hands_on_the_guard_the_current_size_and_the_window_bound_and_takes_the_newest_100_in_utc(
        monkeypatch):
    """What choose passes between its parts that test_choose_composes_the_parts cannot see: the workload is the
    median of the newest 100 records (here 300, the oldest 200 at another rate), its hour is UTC's whatever the
    local zone, the scenarios kept up with only reach predict and the reason, candidate_grid gets the current
    BatchSize, and an SLO under 1 s allows no batching window."""
    rows = TRAIN + _surface(list(range(15, 501, 30)), 100, NOON - 200, rate=100.0)
    calls = {}
    real_grid, real_predict = policy.candidate_grid, policy.predict

    def grid(settings_, current, max_window, rejections, keep):
        calls["grid"] = (current, max_window)
        return real_grid(settings_, current, max_window, rejections, keep)

    def predict(c, rates, workload, fitted, slo, keep_up_only=frozenset()):
        calls["guard"] = keep_up_only
        return real_predict(c, rates, workload, fitted, slo, keep_up_only)
    monkeypatch.setattr(policy, "candidate_grid", grid)
    monkeypatch.setattr(policy, "predict", predict)
    monkeypatch.setattr(queueing, "keep_up_only", lambda records_, rates: set(sorted(rates)[:2]))
    with local_time_zone("Asia/Kolkata"):                                       # UTC+5:30: 17:30 at NOON
        decision = policy.choose(rows, _settings(latency_slo_seconds=2.5), current=200, now=NOON + 5)[0]
    guard = calls["guard"]
    assert len(guard) == 2 and calls["grid"] == (200, 2)
    assert decision.reason.startswith("cheapest predicted tunable cost per event among BatchSize ")
    assert decision.reason.endswith(f"; {', '.join(sorted(guard))}: kept up with only (the load follows the daily "
                                    "profile)")
    assert (decision.workload["arrival_rate"], decision.workload["hour"]) == (100.0, 12.0)
    policy.choose(rows, _settings(latency_slo_seconds=0.9), current=200, now=NOON + 5)
    assert calls["grid"] == (200, 0)
    assert policy.choose(rows, _settings(), current=200)[0].status == "trained"   # no now: the wall clock's


# ------------------------------------------------------------------------------------------------------ apply
def _mapping(monkeypatch, batch_size=400, window=1):
    from lambdakit import event_source_mapping

    return event_source_mapping(monkeypatch, batch_size, window)


def test_retrain_and_apply_writes_the_decision_it_made_back(aws, monkeypatch):
    from pipeline.optimizer import apply

    lam, uuid = _mapping(monkeypatch, window=7)          # the mapping's window differs from any it may get
    history = [{"at": k, "batch_size": 400, "window": 1, "status": "trained"} for k in range(50)]
    item = {"pk": "config", "batch_size": 400, "batching_window_seconds": 1, "invoke_chunk_size": 100,
            "optimizer_state": {"rejected": {"60": NOON + 10}}, "history": history}
    store.put_item("state", item)
    reads = []
    monkeypatch.setattr(apply, "load_cost_records", lambda given, now: reads.append((given, now)) or TRAIN)
    s = settings()
    expected, _, state = rollback.decide(TRAIN, s, BatchConfig.from_item(item, s), NOON)
    assert (expected.batch_size, expected.batching_window_seconds) != (400, 1)        # a change to apply
    result = apply.retrain_and_apply(s, now=NOON)
    assert reads == [(s, NOON)]
    import pickle

    import boto3

    saved = pickle.loads(boto3.client("s3").get_object(Bucket="artifacts", Key=result["model_s3_key"])["Body"].read())
    assert saved["models"]["features"] == model.FEATURES and saved["decision"] == dataclasses.asdict(expected)
    assert result == dataclasses.asdict(expected) | {"trained_at": NOON, "previous_batch_size": 400, "applied": True,
                                                     "model_s3_key": "optimizer/20270101T120000Z/model.pkl"}
    esm = lam.get_event_source_mapping(UUID=uuid)
    assert (esm["BatchSize"], esm["MaximumBatchingWindowInSeconds"]) == (
        expected.batch_size, expected.batching_window_seconds)
    config = store.get_item("state", {"pk": "config"})
    assert (config["batch_size"], config["batching_window_seconds"], config["invoke_chunk_size"],
            config["updated_at"]) == (expected.batch_size, expected.batching_window_seconds,
                                      expected.invoke_chunk_size, NOON)
    assert config["optimizer"] == result
    assert config["optimizer_state"] == rollback.record_change(state, expected, 400, 1, NOON)
    assert config["history"] == history[-47:] + [{"at": NOON, "batch_size": expected.batch_size,
                                                  "window": expected.batching_window_seconds, "status": "trained"}]


def test_retrain_and_apply_leaves_the_mapping_alone_when_nothing_changes(aws, monkeypatch):
    from pipeline.optimizer import apply

    lam, uuid = _mapping(monkeypatch, batch_size=300, window=2)
    store.put_item("state", {"pk": "config", "batch_size": 100, "batching_window_seconds": 0,
                             "invoke_chunk_size": 100})
    monkeypatch.setattr(apply, "load_cost_records", lambda s, now: TRAIN[:10])       # too little: the default
    s = _settings(batch_size=100, batching_window_seconds=0)
    before = time.time()
    result = apply.retrain_and_apply(s)                                              # now: the clock
    assert before <= result["trained_at"] <= time.time()
    assert result["status"] == "fallback" and result["applied"] is False and result["model_s3_key"] is None
    esm = lam.get_event_source_mapping(UUID=uuid)
    assert (esm["BatchSize"], esm["MaximumBatchingWindowInSeconds"]) == (300, 2)       # not called
    import boto3

    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket="artifacts", Prefix="optimizer/")


def test_a_rollback_restores_the_window_before_and_chooses_with_the_setting_in_force():
    """BatchSize 400 with a 2 s window replaced 200 with none and measured dearer, at 1 event/s: 200 with no window
    holds the 2 s SLO (a poll, then the batch), 400 with 2 s does not. The settings' window (1 s) is neither."""
    s = _settings(latency_slo_seconds=2.0, batching_window_seconds=1, max_batch_size=500)
    history = _surface(list(range(15, 501, 30)), 60, NOON - 86400, rate=1.0)        # 12h yesterday: this hour
    after = [r | {"events": 100, "configured_window_seconds": 2}
             for r in _surface([400], 20, NOON - 400, cost=1.3e-6, rate=1.0)]      # 400 made batches of 100
    rows = history + TRAIN + _surface([200], 20, NOON - 1000, cost=1e-6, rate=1.0) + after
    change = {"applied_at": NOON - 500, "batch_size": 400, "previous_batch_size": 200, "purpose": "cost",
              "previous_window_seconds": 0, "evaluated": False}
    config = BatchConfig(applied=True, batch_size=400, batching_window_seconds=2, invoke_chunk_size=100,
                         optimizer_state={"last_change": change})
    decision, _, _ = rollback.decide(rows, s, config, NOON)
    assert (decision.batch_size, decision.batching_window_seconds, decision.status) == (200, 0, "rollback")
    # an older change record without the window before: the window in force, 2 s, which 200 cannot hold now
    config = dataclasses.replace(config, optimizer_state={"last_change": {
        k: v for k, v in change.items() if k != "previous_window_seconds"}})
    decision, _, _ = rollback.decide(rows, s, config, NOON)
    assert decision.status == "trained" and "BatchSize 200 with a 2s window is not predicted" in decision.reason
    # chosen with the setting in force (400, 2 s: it made batches of 100, so the bound counts down from 100) at
    # the retrain's time (12h: yesterday's 12h is "this hour")
    assert "among BatchSize 50..500 x window 0..2s" in decision.reason and "this hour p10" in decision.reason


def test_a_pending_change_that_cannot_hold_the_slo_is_superseded_now():
    """BatchSize 10 (from 20, 50 batches ago: pending) cannot keep up with 600 events/s: choose now, with the
    rejections in force at the retrain's time, and mark the change judged (superseded) so it is not judged again."""
    history = _surface(list(range(15, 501, 30)), 60, NOON - 86400, rate=600.0)      # 12h yesterday: this hour
    recent = [_surface(list(range(15, 501, 30)), 100, NOON - k, rate=600.0) for k in (1800, 1200)]
    rows = history + recent[0] + recent[1] + _surface([10], 50, NOON - 500, rate=600.0)       # now: 3 slots
    change = {"applied_at": NOON - 550, "batch_size": 10, "previous_batch_size": 20, "previous_window_seconds": 0,
              "purpose": "cost", "evaluated": False}
    config = BatchConfig(applied=True, batch_size=10, batching_window_seconds=0, invoke_chunk_size=10,
                         optimizer_state={"last_change": change, "rejected": {"495": NOON + 10, "100": NOON}})
    decision, models, state = rollback.decide(rows, settings(), config, NOON)
    assert decision.purpose == "slo" and decision.batch_size > 20 and models is not None
    assert "excluded after rollback: [495]" in decision.reason and "this hour p10" in decision.reason
    assert state["last_change"] == change | {"evaluated": True, "evaluation": {
        "batches_before": 0, "batches_after": 50, "matched_before": 0, "matched_after": 0, "from": 20, "to": 10,
        "verdict": "superseded"}}
    assert state["rejected"] == {"495": NOON + 10} and "last_evaluation" not in state


def test_evaluate_change_rate_bins_are_1_5_wide_and_batches_without_a_rate_or_size_stand_apart():
    before = _batches(20, 100, NOON - 100, rate=1.0)
    # 1.0 and 1.6 events/s: bins 0 and 1 (log 1.6 / log 1.5 = 1.16); 0.5 (bin -2) and no rate: apart too
    assert rollback.evaluate_change(before + _batches(20, 200, NOON, rate=1.6), CHANGE, NOW_)["matched_after"] == 0
    slow = _batches(20, 100, NOON - 100, rate=0.5)
    no_rate = [r | {"arrival_rate": None} for r in _batches(20, 200, NOON)]
    assert rollback.evaluate_change(slow + no_rate, CHANGE, NOW_)["matched_after"] == 0
    assert rollback.evaluate_change(before + no_rate, CHANGE, NOW_)["matched_after"] == 0
    # a record without the setting it ran under belongs to neither side, even when a BatchSize is 1
    to_one = {"applied_at": NOON, "batch_size": 1, "previous_batch_size": 100}
    unknown = [{k: v for k, v in r.items() if k != "configured_batch_size"} for r in _batches(3, 1, NOON + 50)]
    verdict = rollback.evaluate_change(before + _batches(20, 1, NOON) + unknown, to_one, NOW_)
    assert (verdict["batches_before"], verdict["batches_after"]) == (20, 20)
    from_one = {"applied_at": NOON, "batch_size": 200, "previous_batch_size": 1}
    unknown = [{k: v for k, v in r.items() if k != "configured_batch_size"} for r in _batches(3, 1, NOON - 50)]
    verdict = rollback.evaluate_change(_batches(20, 1, NOON - 100) + unknown + _batches(20, 200, NOON), from_one,
                                       NOW_)
    assert (verdict["batches_before"], verdict["batches_after"]) == (20, 20)


def test_evaluate_change_without_a_time_judges_at_the_clock():
    change = CHANGE | {"applied_at": time.time() - 3 * 3600 - 60}
    assert rollback.evaluate_change([], change)["verdict"] == "inconclusive"
    assert rollback.evaluate_change([], CHANGE | {"applied_at": time.time() - 60})["verdict"] == "pending"


# ------------------------------------------------------------------------------------------------------ wiring
# decide and _while_pending hand what they know to choose and evaluate_change; a dropped argument makes them
# default to the wall clock, no rejected sizes or no window, which the tests above would not always notice.
def _spy_choose(monkeypatch, decision):
    calls = []

    def choose(records_, settings_, current, **kwargs):
        calls.append((current, kwargs))
        return decision, None
    monkeypatch.setattr(rollback, "choose", choose)
    return calls


def test_decide_hands_choose_the_unexpired_rejections_the_time_and_the_window_in_force(monkeypatch):
    decision = policy.Decision(300, 2, 100, "chosen", 0)
    calls = _spy_choose(monkeypatch, decision)
    config = BatchConfig(applied=True, batch_size=200, batching_window_seconds=3, invoke_chunk_size=100,
                         optimizer_state={"rejected": {"300": NOON + 1, "400": NOON}})
    got, _, state = rollback.decide([], _settings(), config, NOON)
    assert got is decision and state["rejected"] == {"300": NOON + 1}
    assert calls == [(200, {"rejected": {"300": NOON + 1}, "now": NOON, "current_window": 3})]


def test_decide_judges_an_unjudged_change_at_the_retrain_time_and_never_a_judged_one(monkeypatch):
    _spy_choose(monkeypatch, policy.Decision(200, 0, 100, "chosen", 0))
    judged = []

    def evaluate_change(records_, last_change, now, slo):
        judged.append((now, slo))
        return {"verdict": "kept", "from": 100, "to": 200}
    monkeypatch.setattr(rollback, "evaluate_change", evaluate_change)
    unjudged = BatchConfig(applied=True, batch_size=200, batching_window_seconds=0, invoke_chunk_size=100,
                           optimizer_state={"last_change": CHANGE | {"purpose": "cost", "evaluated": False}})
    _, _, state = rollback.decide([], _settings(latency_slo_seconds=2.5), unjudged, NOON + 60)
    assert judged == [(NOON + 60, 2.5)] and state["last_change"]["evaluated"] is True
    assert state["last_evaluation"] == {"at": NOON + 60, "verdict": "kept", "from": 100, "to": 200}
    done = BatchConfig(applied=True, batch_size=200, batching_window_seconds=0, invoke_chunk_size=100,
                       optimizer_state={"last_change": CHANGE | {"purpose": "cost", "evaluated": True}})
    rollback.decide([], _settings(), done, NOON + 60)
    assert judged == [(NOON + 60, 2.5)]                                  # not judged again


@pytest.mark.parametrize("purpose,keep_holds_slo,superseded", [
    ("slo", None, True), ("slo", True, True), ("cost", False, True), ("cost", None, False), ("cost", True, False)])
def test_a_pending_change_gives_way_to_a_move_for_the_slo_or_when_keeping_would_break_it(
        monkeypatch, purpose, keep_holds_slo, superseded):
    chosen = policy.Decision(400, 1, 100, "chosen", 0, purpose=purpose, keep_holds_slo=keep_holds_slo)
    calls = _spy_choose(monkeypatch, chosen)
    config = BatchConfig(applied=True, batch_size=200, batching_window_seconds=1, invoke_chunk_size=100,
                         optimizer_state={})
    verdict = {"verdict": "pending", "from": 100, "to": 200, "batches_before": 20, "batches_after": 3}
    decision, _, state = rollback._while_pending([], _settings(), config, NOON, {}, {"50": NOON + 9}, CHANGE,
                                                 verdict)
    assert calls == [(200, {"rejected": {"50": NOON + 9}, "now": NOON, "current_window": 1})]
    if superseded:
        assert decision is chosen and state["last_change"]["evaluation"]["verdict"] == "superseded"
    else:
        assert (decision.batch_size, decision.status) == (200, "waiting") and "last_change" not in state


def test_cost_curve_of_72_choosable_candidates_takes_every_ninth():
    sizes = list(range(10, 83))                                           # 72 choosable and the setting kept
    curve = policy.cost_curve(_cands(sizes, [0] * 73), _preds([True] * 73, [True] * 73, np.arange(73.0),
                                                              [0.5] * 73), 0)
    assert list(curve) == [str(s) for s in range(10, 82, 9)]           # 8 points, the chosen (10) among them


def test_now_follows_the_profile_at_the_exact_edges_and_only_the_newest_slots_count():
    # rates 12 and 16 events/s yesterday at 11 h (slot rates that come out exact in binary floating point)
    history = _slot_rows(NOON - 86400 - 3600, 3, 10, 12.0) + _slot_rows(NOON - 86400 - 1800, 3, 10, 16.0)
    for edge in (8.0, 24.0):                                              # 12 / 1.5 and 16 x 1.5: within
        assert queueing.follows_profile(history + _slot_rows(NOON - 1800, 3, 1, edge))
    # one batch at 10 h today, older than the newest three slots: no 10 h history, but it is not "now"
    assert queueing.follows_profile(history + _slot_rows(NOON - 4200, 1, 1, 50.0)
                                    + _slot_rows(NOON - 1800, 3, 1, 16.0))


def test_arrival_time99_of_a_fraction_of_an_event():
    assert queueing.arrival_time99(np.array([0.5]), 2.0)[0] == pytest.approx(stats.gamma.ppf(0.99, 0.5) / 2,
                                                                              rel=1e-9)


def test_a_change_between_free_batches_is_kept_not_divided_by_zero():
    free = _batches(20, 100, NOON - 100, cost=0.0) + _batches(20, 200, NOON, cost=0.0)
    verdict = rollback.evaluate_change(free, CHANGE, now=NOON)
    assert verdict["verdict"] == "kept" and verdict["change"] is None
    assert verdict["cost_per_event_before"] == 0.0 and verdict["cost_per_event_after"] == 0.0


def test_a_record_without_its_latency_counts_as_within_the_slo():
    assert rollback.slo_share([{"events": 1}, {"events": 1, "latency_max": 0.6}], 0.5) == 0.5


def test_load_cost_records_at_a_fraction_of_a_second_in_another_time_zone_and_by_default_now(aws, monkeypatch):
    """The window is whole UTC hours whatever the local zone and the fraction of a second of ``now``; without
    ``now`` it ends at the current time's next hour."""
    end = NOON + 3600
    rows = [{"recorded_at": end - 86400, "n": 9}, {"recorded_at": NOON + 3000, "n": 3},
            {"recorded_at": end + 0.2, "n": 12}]                           # the window's first instant; after it
    for n, r in enumerate(rows):
        stamp = datetime.fromtimestamp(r["recorded_at"], tz=timezone.utc)
        store.put_item("cost", r | {"day": stamp.strftime("%Y-%m-%d"), "batch_key": f"{stamp.isoformat()}#b{n}"})
    with local_time_zone("America/New_York"):
        read = records.load_cost_records(settings(), days=1, per_hour=12, now=NOON + 3590.5)
        assert [r["n"] for r in read] == [9, 3]
        monkeypatch.setattr(records.time, "time", lambda: NOON + 3590.5)
        assert [r["n"] for r in records.load_cost_records(settings(), days=1, per_hour=12)] == [9, 3]


def _predicted_batch_by_hand(size, window, rate, ps_fixed, ps_per_event):
    """queueing.predicted_batch for one BatchSize, restated in scalar Python from its docstring and comments."""
    cycle = ps_fixed + 0.02                                   # + the Lambda invoke overhead between batches
    if rate <= 0:
        return 1.0, 0.99 + window, True                       # a record waits up to a poll, then the window
    if 1.5 * rate * ps_per_event >= 1:
        return float(size), math.inf, False
    events = min(max(rate * cycle / (1 - rate * ps_per_event) + rate * window, 1), size)
    for _ in range(3):
        busy_cycle = cycle + ps_per_event * events
        p_idle = math.exp(-rate * busy_cycle)
        gathered = rate * busy_cycle + p_idle * rate * 1.0 / 2
        full = gathered + rate * window >= size
        fill = min(max(stats.gamma.ppf(0.99, max(size - gathered, 1e-9)) / rate if size - gathered > 0 else 0.0,
                       0.0), window) if full else float(window)
        events = size if full else min(max(math.floor(gathered + rate * window), 1), size)
    u = 1.0 * min(max(1 - 0.01 / max(p_idle, 1e-12), 0.0), 1.0)
    idle_wait = max(u, min(u + window, stats.gamma.ppf(0.99, size - 1) / rate if size > 1 else 0.0)) \
        if p_idle > 0.01 else 0.0
    stable = size >= 1.5 * rate * cycle / (1 - 1.5 * rate * ps_per_event)
    return events, max(busy_cycle + fill, idle_wait), stable


@pytest.mark.parametrize("window", [0, 1, 3])
@pytest.mark.parametrize("rate,ps_fixed,ps_per_event", [
    (0.0, 1.5, 0.001), (0.3, 0.05, 0.0), (2.0, 0.2, 0.004), (20.0, 0.08, 0.002), (60.0, 0.3, 0.01),
    (150.0, 0.05, 0.004), (400.0, 0.1, 0.0016)])
def test_predicted_batch_matches_its_definition_across_the_regimes(window, rate, ps_fixed, ps_per_event):
    """Idle, lightly loaded, window-closed and size-closed batches, near the stability bound and beyond it: every
    BatchSize's events, p99 wait and keeping up as the scalar restatement above works them out."""
    sizes = [1, 2, 5, 10, 25, 60, 100, 250, 500, 1000]
    events, wait, stable = queueing.predicted_batch(np.array(sizes), window, rate, ps_fixed, ps_per_event)
    for i, size in enumerate(sizes):
        e, w, s = _predicted_batch_by_hand(size, window, rate, ps_fixed, ps_per_event)
        assert (events[i], bool(stable[i])) == (pytest.approx(e, rel=1e-12), s), (size, events[i], stable[i])
        assert wait[i] == pytest.approx(w, rel=1e-9), (size, wait[i], w)


def test_decision_hours_are_utc_hours_whatever_the_local_zone():
    with local_time_zone("America/New_York"):
        assert queueing.decision_hours(NOON + 299) == [12] and queueing.decision_hours(NOON + 300) == [12, 13]


def test_keeping_up_is_inclusive_at_the_exact_bound():
    # 1.5 x 100 events/s x (0.08 + 0.02) s = 15 events exactly (binary floating point): 15 keeps up, 14 does not
    assert list(queueing.predicted_batch(np.array([14, 15]), 0, 100.0, 0.08, 0.0)[2]) == [False, True]
