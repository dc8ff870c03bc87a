"""Read side (pipeline/queries.py) on integer, grid-aligned times: history since/until are inclusive on both ends,
the median window is (latest - 300 s, latest], counters sum over the stats item and the shards' items."""
import base64
import time
from datetime import datetime, timezone

import pytest
from lambdakit import local_time_zone

from pipeline import queries, store
from pipeline.events import Event
from pipeline.features import FeatureState, feature_names
from pipeline.settings import Settings

T0 = 1_700_000_000  # a multiple of 100 s


@pytest.fixture
def settings(aws):
    return Settings.from_env()


def _predictions(user: str, rows: list[tuple[float, float]]) -> None:
    for n, (ts, score) in enumerate(rows):
        store.put_item("predictions", {"event_id": f"{user}-e{n}", "user_id": user, "ts": ts, "score": score,
                                       "variant": "primary", "expires_at": 9_999_999_999})


def _ids(rows: list[dict]) -> list[str]:
    return [r["event_id"] for r in rows]


def test_history_bounds_are_inclusive_on_both_ends(settings):
    _predictions("u1", [(T0, 0.1), (T0 + 100, 0.2), (T0 + 200, 0.3), (T0 + 300, 0.4)])
    assert _ids(queries.history(settings, "u1", T0 + 100, T0 + 200)) == ["u1-e1", "u1-e2"]
    assert _ids(queries.history(settings, "u1", T0 + 100, None)) == ["u1-e1", "u1-e2", "u1-e3"]
    assert _ids(queries.history(settings, "u1", None, T0 + 200)) == ["u1-e0", "u1-e1", "u1-e2"]
    assert _ids(queries.history(settings, "u1", None, None)) == ["u1-e0", "u1-e1", "u1-e2", "u1-e3"]
    assert _ids(queries.history(settings, "u1", T0 + 100.001, T0 + 199.999)) == []
    assert _ids(queries.history(settings, "u1", None, None, limit=2)) == ["u1-e0", "u1-e1"]
    assert queries.history(settings, "u1", T0, T0) == [
        {"event_id": "u1-e0", "timestamp": T0, "score": 0.1, "variant": "primary"}]
    assert queries.history(settings, "nobody", None, None) == []


def test_median_window_excludes_an_event_exactly_300_s_before_the_latest(settings):
    _predictions("u1", [(T0, 0.9), (T0 + 0.001, 0.1), (T0 + 200, 0.2), (T0 + 300, 0.4)])
    result = queries.user_median(settings, "u1")
    # T0 is exactly 300 s before the latest event: out; T0 + 1 ms is in; even count -> mean of the middle two
    assert result == {"user_id": "u1", "median": pytest.approx(0.2), "window_seconds": 300, "count": 3,
                      "window_end": T0 + 300}
    assert queries.user_median(settings, "u1", window_seconds=100)["count"] == 1
    _predictions("u2", [(T0, 0.2), (T0 + 299, 0.6)])
    assert queries.user_median(settings, "u2")["median"] == pytest.approx(0.4)
    with pytest.raises(queries.NotFound) as info:
        queries.user_median(settings, "nobody")
    assert info.value.code == "user_not_found"


def test_prediction_hides_its_expiry_and_unknown_ids_are_not_found(settings):
    _predictions("u1", [(T0, 0.5)])
    assert queries.prediction(settings, "u1-e0") == {"event_id": "u1-e0", "user_id": "u1", "ts": T0, "score": 0.5,
                                                     "variant": "primary"}
    with pytest.raises(queries.NotFound) as info:
        queries.prediction(settings, "nope")
    assert (info.value.code, str(info.value)) == ("prediction_not_found", "no prediction for event 'nope'")
    with pytest.raises(queries.NotFound) as info:
        queries.user_median(settings, "nobody")
    assert (info.value.code, str(info.value)) == ("user_not_found", "no predictions for user 'nobody'")


def test_features_of_a_user_and_one_feature_by_name(settings):
    state = FeatureState("v1")
    state.add(Event(event_id="e1", user_id="u1", event_type="purchase", timestamp=T0, amount=5.0))
    state.add(Event(event_id="e2", user_id="u1", event_type="view", timestamp=T0 + 60))
    store.put_item("features", {"user_id": "u1", "feature_set": "v1", "hot": state.to_bytes(), "at": T0 + 61})
    body = queries.user_features(settings, "u1")
    assert body["user_id"] == "u1" and body["feature_set"] == "v1" and body["updated_at"] == T0 + 61
    assert (body["total_events"], body["late_events"]) == (2, 0)
    assert list(body["features"]) == list(feature_names("v1"))
    assert body["features"]["events_1h"] == 2.0 and body["features"]["seconds_since_prev"] == 60.0
    assert queries.user_feature(settings, "u1", "purchases_24h") == {
        "user_id": "u1", "feature_set": "v1", "name": "purchases_24h", "value": 1.0}
    with pytest.raises(queries.NotFound) as info:
        queries.user_feature(settings, "u1", "nonsense")
    assert (info.value.code, str(info.value)) == (
        "unknown_feature", f"unknown feature 'nonsense'; known: {', '.join(feature_names('v1'))}")
    for user, item in (("u2", None), ("u3", {"user_id": "u3", "feature_set": "v1", "at": 1})):
        if item:
            store.put_item("features", item)
        with pytest.raises(queries.NotFound) as info:
            queries.user_features(settings, user)
        assert (info.value.code, str(info.value)) == ("user_not_found", f"no features for user {user!r}")


def test_stats_sum_the_stats_item_and_every_shards_counters(settings):
    store.put_item("state", {"pk": "stats", "events_ingested": 10, "events_rejected_at_api": 2,
                             "events_predicted": 7, "batches": 3, "cost_usd_total": 0.5, "cost_events_total": 100})
    store.put_item("state", {"pk": "stream#shard-0", "events_processed_by_stream": 4, "events_rejected": 1,
                             "events_duplicate": 1, "events_late": 1, "users_tracked": 2, "counted_seq": 999})
    store.put_item("state", {"pk": "stream#shard-1", "events_processed_by_stream": 5, "users_tracked": 1,
                             "counted_seq": 5})
    store.put_item("state", {"pk": "other", "events_ingested": 1000})
    store.put_item("state", {"pk": "config", "batch_size": 250, "invoke_chunk_size": 50})
    stats = queries.stats(settings)
    assert {k: stats[k] for k in ("events_ingested", "events_rejected_at_api", "events_processed", "events_rejected",
                                  "events_duplicate", "events_late", "events_predicted", "users_tracked", "batches",
                                  "current_batch_size", "invoke_chunk_size", "stream_dlq_messages",
                                  "quarantine_messages", "median_of_medians_sample_size")} == {
        "events_ingested": 10, "events_rejected_at_api": 2, "events_processed": 9, "events_rejected": 1,
        "events_duplicate": 1, "events_late": 1, "events_predicted": 7, "users_tracked": 3, "batches": 3,
        "current_batch_size": 250, "invoke_chunk_size": 50, "stream_dlq_messages": 0, "quarantine_messages": 0,
        "median_of_medians_sample_size": 256}
    assert stats["cost_per_1k_events_usd"] == pytest.approx(5.0)


def test_stats_of_an_empty_deployment_use_the_configured_settings(settings):
    assert queries.stats(settings) == {
        "events_ingested": 0, "events_rejected_at_api": 0, "events_processed": 0, "events_rejected": 0,
        "events_duplicate": 0, "events_late": 0, "events_predicted": 0, "users_tracked": 0,
        "median_of_medians": None, "median_of_medians_sampled": False, "median_of_medians_sample_size": 256,
        "batches": 0, "cost_per_1k_events_usd": None, "current_batch_size": 100, "invoke_chunk_size": 100,
        "stream_dlq_messages": 0, "quarantine_messages": 0}


def test_queue_depth_counts_visible_and_in_flight_messages(aws, settings):
    sqs = aws["sqs"]
    url = settings.quarantine_queue_url
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    assert queries.queue_depth(url) == 3
    assert queries.queue_depth("") == 0
    sqs.send_message(QueueUrl=settings.stream_dlq_url, MessageBody="a batch's position")
    stats = queries.stats(settings)
    assert (stats["quarantine_messages"], stats["stream_dlq_messages"]) == (3, 1)


def test_recent_batches_are_newest_first_from_today_then_yesterday(settings):
    now = time.time()
    today = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%d")
    yesterday = datetime.fromtimestamp(now - 86400, tz=timezone.utc).strftime("%Y-%m-%d")
    older = datetime.fromtimestamp(now - 2 * 86400, tz=timezone.utc).strftime("%Y-%m-%d")
    for day, keys in ((today, ["t1", "t2"]), (yesterday, ["y1", "y2", "y3"]), (older, ["o1"])):
        for key in keys:
            store.put_item("cost", {"day": day, "batch_key": key})
    assert [b["batch_key"] for b in queries.recent_batches(settings, limit=4)] == ["t2", "t1", "y3", "y2"]
    assert [b["batch_key"] for b in queries.recent_batches(settings, limit=2)] == ["t2", "t1"]
    assert [b["batch_key"] for b in queries.recent_batches(settings)] == ["t2", "t1", "y3", "y2", "y1"]


def test_model_status_before_and_after_a_retrain(settings):
    before = queries.model_status(settings)
    assert before == {"endpoint": "model-endpoint", "model_version": "xgb-1", "feature_set": "v1", "batch_size": 100,
                      "configured_model_version": "xgb-1",
                      "live": {"source": "stack", "updated_at": None, "variants": []},   # no promotion yet
                      "batching_window_seconds": 1, "invoke_chunk_size": 100, "optimizer": {
                          "batch_size": 100, "batching_window_seconds": 1, "invoke_chunk_size": 100,
                          "latency_slo_seconds": 2.0, "range": [10, 500], "status": "not trained yet",
                          "reason": "no retrain has run; the deployed defaults apply"}}
    decision = {"status": "trained", "purpose": "cost", "reason": "cheapest", "trained_at": 5, "records": 40,
                "r2_cost": 0.9, "r2_latency": 0.8, "latency_margin_seconds": 0.1, "predicted_cost_per_event": 1e-6,
                "predicted_latency": 1.5, "previous_batch_size": 100, "applied": True, "workload": {"rate": 1},
                "candidates": {"200": {}}, "model_s3_key": "optimizer/x/model.pkl"}
    state = {"last_change": {"batch_size": 200}, "last_evaluation": {"verdict": "kept"}, "rollbacks": [{"at": 1}],
             "rejected": {"300": 9}}
    store.put_item("state", {"pk": "config", "batch_size": 200, "batching_window_seconds": 2, "invoke_chunk_size": 50,
                             "optimizer": decision, "optimizer_state": state, "history": [{"at": 5}]})
    after = queries.model_status(settings)
    assert (after["batch_size"], after["batching_window_seconds"], after["invoke_chunk_size"]) == (200, 2, 50)
    view = after["optimizer"]
    assert view == {"batch_size": 200, "batching_window_seconds": 2, "invoke_chunk_size": 50,
                    "latency_slo_seconds": 2.0, "range": [10, 500], "status": "trained", "purpose": "cost",
                    "reason": "cheapest", "trained_at": 5, "records": 40, "r2_cost": 0.9, "r2_latency": 0.8,
                    "latency_margin_seconds": 0.1, "predicted_cost_per_event_usd": 1e-6,
                    "predicted_latency_seconds": 1.5, "previous_batch_size": 100, "applied": True,
                    "workload": {"rate": 1}, "predicted_curve": {"200": {}}, "model_s3_key": "optimizer/x/model.pkl",
                    "last_change": {"batch_size": 200}, "last_evaluation": {"verdict": "kept"},
                    "rollbacks": [{"at": 1}], "excluded_sizes": {"300": 9}, "history": [{"at": 5}]}
    recent = queries.recent_batches_view(settings)
    assert recent == {"batches": [], "optimizer": {
        "batch_size": 200, "batching_window_seconds": 2, "invoke_chunk_size": 50, "status": "trained",
        "reason": "cheapest", "r2_cost": 0.9, "r2_latency": 0.8, "trained_at": 5}}


def test_variant_stats_per_variant_and_version(settings, monkeypatch):
    monkeypatch.setenv("MODEL_VARIANTS", '[{"name": "primary", "weight": 0.8}, {"name": "challenger", "weight": 0.2,'
                                         ' "kind": "pytorch", "model_version": "torch-1"}]')
    store.put_item("state", {"pk": "stats", "variant#primary#xgb-1#n": 3, "variant#primary#xgb-1#sum": 1.5,
                             "variant#challenger#torch-1#n": 1, "variant#challenger#torch-1#sum": 0.25,
                             "variant#ghost#v0#n": 0, "events_ingested": 4, "variant#bad#x#n": "text"})
    body = queries.variant_stats(Settings.from_env())
    assert body["predictions"] == 4
    assert body["stats"] == [
        {"variant": "challenger", "model_version": "torch-1", "predictions": 1, "mean_score": 0.25, "share": 0.25},
        {"variant": "ghost", "model_version": "v0", "predictions": 0, "mean_score": None, "share": 0.0},
        {"variant": "primary", "model_version": "xgb-1", "predictions": 3, "mean_score": 0.5, "share": 0.75}]
    assert body["variants"] == [{"name": "primary", "weight": 0.8, "kind": "xgboost", "model_version": "xgb-1"},
                                {"name": "challenger", "weight": 0.2, "kind": "pytorch", "model_version": "torch-1"}]
    assert body["assignment"].startswith("sticky per user")
    store.put_item("state", {"pk": "stats"})
    assert queries.variant_stats(Settings.from_env())["stats"] == []


def _token(key) -> str:
    import base64
    import json
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def test_history_pages_carry_a_compact_unpadded_token_to_the_next_page(settings):
    import base64
    import json
    _predictions("u1", [(T0 + 10 * n, n / 10) for n in range(5)])
    assert (queries.HISTORY_PAGE_SIZE, queries.HISTORY_MAX_PAGE_SIZE) == (100, 1000)
    assert queries.history_page(settings, "u1", None, None)["page_size"] == 100
    first = queries.history_page(settings, "u1", None, None, page_size=2)
    assert _ids(first["history"]) == ["u1-e0", "u1-e1"] and first["page_size"] == 2
    token = first["next_token"]
    assert "=" not in token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert json.loads(raw) == {"event_id": "u1-e1", "user_id": "u1", "ts": T0 + 10} and b" " not in raw
    second = queries.history_page(settings, "u1", None, None, page_size=2, next_token=token)
    assert _ids(second["history"]) == ["u1-e2", "u1-e3"]
    third = queries.history_page(settings, "u1", None, None, page_size=2, next_token=second["next_token"])
    assert _ids(third["history"]) == ["u1-e4"] and third["next_token"] is None
    ranged = queries.history_page(settings, "u1", T0 + 10, T0 + 30, page_size=2)
    assert _ids(ranged["history"]) == ["u1-e1", "u1-e2"]
    rest = queries.history_page(settings, "u1", T0 + 10, T0 + 30, page_size=2, next_token=ranged["next_token"])
    assert _ids(rest["history"]) == ["u1-e3"]
    assert first["user_id"] == "u1"
    # tokens of every padding length (0 to 2 "=" removed) are unpadded and decode
    for event_id in ("e", "ee", "eee", "eeee"):
        key = {"event_id": event_id, "user_id": "u1", "ts": T0}
        assert queries._decode_token(_token(key), "u1") == key
        assert "=" not in queries._encode_token(key) and queries._decode_token(queries._encode_token(key), "u1") == key


@pytest.mark.parametrize("token", [
    "!!!!", _token([1, 2]), _token({"event_id": "e", "user_id": "u2", "ts": 1}),
    _token({"event_id": "e", "user_id": "u1"}), _token({"event_id": "e", "user_id": "u1", "ts": 1, "x": 2}),
    base64.urlsafe_b64encode(b"\xff\xfe").decode()])
def test_a_token_not_returned_for_this_query_is_refused(settings, token):
    with pytest.raises(queries.BadToken):
        queries.history_page(settings, "u1", None, None, next_token=token)


def test_a_prediction_without_an_expiry_and_a_median_over_more_than_1000_events(settings):
    store.put_item("predictions", {"event_id": "p1", "user_id": "u9", "ts": T0, "score": 0.5})
    assert queries.prediction(settings, "p1") == {"event_id": "p1", "user_id": "u9", "ts": T0, "score": 0.5}
    # 1,001 events in the 300 s window: all counted (history's default limit is 1,000)
    store.batch_put("predictions", [{"event_id": f"m{n}", "user_id": "u8", "ts": T0 + n / 10, "score": n % 2}
                                    for n in range(1001)], ("event_id",))
    result = queries.user_median(settings, "u8")
    assert (result["count"], result["median"], result["window_end"]) == (1001, 0, pytest.approx(T0 + 100))
    assert len(queries.history(settings, "u8", None, None)) == 1000     # history's default limit


def test_features_read_the_hot_part_only_of_any_feature_set_and_a_state_without_a_vector(settings, monkeypatch):
    state = FeatureState("v1")
    for hour in range(30):                                  # hours ago roll up into hourly (cold) tiles
        state.add(Event(event_id=f"e{hour}", user_id="u1", event_type="view", timestamp=T0 + 3600 * hour))
    assert state.mark_stored() and state.cold_version > 0
    store.put_item("features", {"user_id": "u1", "feature_set": "v1", "hot": state.to_bytes(), "at": 1})
    body = queries.user_features(settings, "u1")             # the cold item is not read (nor needed)
    assert body["total_events"] == 30 and list(body["features"].values()) == state.latest
    store.put_item("features", {"user_id": "u2", "feature_set": "v1", "hot": FeatureState("v1").to_bytes(), "at": 1})
    assert queries.user_features(settings, "u2")["features"] == {}
    monkeypatch.setenv("FEATURE_SET", "v2")
    v2 = FeatureState("v2")
    v2.add(Event(event_id="e1", user_id="u3", event_type="view", timestamp=T0))
    store.put_item("features", {"user_id": "u3", "feature_set": "v2", "hot": v2.to_bytes(), "at": 1})
    body = queries.user_features(Settings.from_env(), "u3")
    assert body["feature_set"] == "v2" and list(body["features"]) == list(feature_names("v2"))


def test_variant_stats_with_a_count_and_no_sum_or_a_sum_and_no_count(settings):
    store.put_item("state", {"pk": "stats", "variant#a#v1#n": 2, "variant#b#v1#sum": 0.5,
                             "variant#c#v1#n": 3, "variant#c#v1#sum": 1.0, "variant#d#v1#n": 1})
    assert queries.variant_stats(settings)["stats"] == [
        {"variant": "a", "model_version": "v1", "predictions": 2, "mean_score": 0.0, "share": 0.333333},
        {"variant": "b", "model_version": "v1", "predictions": 0, "mean_score": None, "share": 0.0},
        {"variant": "c", "model_version": "v1", "predictions": 3, "mean_score": 0.333333, "share": 0.5},
        {"variant": "d", "model_version": "v1", "predictions": 1, "mean_score": 0.0, "share": 0.166667}]
    store.put_item("state", {"pk": "stats", "variant#g#v1#n": 0})    # rows but no prediction yet: no share
    assert queries.variant_stats(settings)["stats"] == [
        {"variant": "g", "model_version": "v1", "predictions": 0, "mean_score": None, "share": None}]


def test_model_status_names_the_live_primarys_version_and_a_decision_without_guard_rail_state(settings):
    store.put_item("state", {"pk": "model", "variants": [
        {"name": "primary", "weight": 0.9, "model_version": "xgb-7"},
        {"name": "challenger", "weight": 0.1, "model_version": "torch-2", "kind": "pytorch"}]})
    store.put_item("state", {"pk": "config", "optimizer": {"status": "trained"}})
    status = queries.model_status(settings)
    assert (status["model_version"], status["configured_model_version"], status["live"]["source"]) == (
        "xgb-7", "xgb-1", "promotion")
    view = status["optimizer"]
    assert (view["status"], view["rollbacks"], view["excluded_sizes"], view["history"]) == ("trained", [], {}, [])


def test_recent_batches_default_to_the_newest_20(settings):
    day = datetime.fromtimestamp(time.time(), tz=timezone.utc).strftime("%Y-%m-%d")
    store.batch_put("cost", [{"day": day, "batch_key": f"k{n:02d}"} for n in range(22)], ("day", "batch_key"))
    expected = [f"k{n:02d}" for n in range(21, 1, -1)]
    assert [b["batch_key"] for b in queries.recent_batches(settings)] == expected
    assert [b["batch_key"] for b in queries.recent_batches_view(settings)["batches"]] == expected
    assert [b["batch_key"] for b in queries.recent_batches_view(settings, limit=3)["batches"]] == expected[:3]


def test_recent_batches_take_utc_days_whatever_the_local_zone_and_yesterday_a_second_after_midnight(
        settings, monkeypatch):
    store.put_item("cost", {"day": "2026-11-22", "batch_key": "today"})
    store.put_item("cost", {"day": "2026-11-21", "batch_key": "yesterday"})
    store.put_item("cost", {"day": "2026-11-20", "batch_key": "older"})
    monkeypatch.setattr(queries.time, "time", lambda: 1_795_305_600.5)   # 2026-11-22T00:00:00.5Z
    with local_time_zone("Etc/GMT+12"):                       # UTC-12: the local date is still 2026-11-21
        assert [b["batch_key"] for b in queries.recent_batches(settings)] == ["today", "yesterday"]


def test_cost_per_1k_events_without_a_cost_total_is_zero(settings):
    store.put_item("state", {"pk": "stats", "cost_events_total": 10})
    assert queries.stats(settings)["cost_per_1k_events_usd"] == 0.0
