"""Read side of the HTTP API: features, scores, history, stats. Plain functions returning JSON-able data."""
from __future__ import annotations

import base64
import json
import statistics
import time
from datetime import datetime, timezone

from boto3.dynamodb.conditions import Key

from . import aws, batch_config, medians, store
from .features import FeatureState, feature_names, named
from .settings import Settings

MEDIAN_WINDOW_SECONDS = medians.WINDOW_SECONDS


class NotFound(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def user_features(settings: Settings, user_id: str) -> dict:
    item = store.get_item(settings.features_table, {"user_id": user_id, "feature_set": settings.feature_set})
    if item is None or not item.get("hot"):
        raise NotFound("user_not_found", f"no features for user {user_id!r}")
    state = FeatureState.from_bytes(item["hot"], None, settings.feature_set, hot_only=True)
    return {"user_id": user_id, "feature_set": settings.feature_set,
            "features": named(state.latest, settings.feature_set) if state.latest else {},
            "total_events": state.total_events, "late_events": state.late_events, "updated_at": item.get("at")}


def user_feature(settings: Settings, user_id: str, name: str) -> dict:
    names = feature_names(settings.feature_set)
    if name not in names:
        raise NotFound("unknown_feature", f"unknown feature {name!r}; known: {', '.join(names)}")
    features = user_features(settings, user_id)
    return {"user_id": user_id, "feature_set": settings.feature_set, "name": name,
            "value": features["features"].get(name)}


def prediction(settings: Settings, event_id: str) -> dict:
    item = store.get_item(settings.predictions_table, {"event_id": event_id})
    if item is None:
        raise NotFound("prediction_not_found", f"no prediction for event {event_id!r}")
    item.pop("expires_at", None)
    return item


class BadToken(ValueError):
    pass


HISTORY_PAGE_SIZE = 100        # GET /users/{id}/history rows per page unless ?limit= says otherwise
HISTORY_MAX_PAGE_SIZE = 1000


def _encode_token(key: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str, user_id: str) -> dict:
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise BadToken("next_token is not a token this API returned") from None
    if not isinstance(key, dict) or set(key) != {"event_id", "user_id", "ts"} or key["user_id"] != user_id:
        raise BadToken("next_token belongs to another query") from None
    return key


def history_page(settings: Settings, user_id: str, since: float | None, until: float | None,
                 page_size: int = HISTORY_PAGE_SIZE, next_token: str | None = None) -> dict:
    """One page of a user's scores, oldest first, and ``next_token`` for the next page (null: no more). A page has
    at most ``page_size`` rows; the last one may come back empty (DynamoDB's LastEvaluatedKey does not say whether
    more items follow)."""
    start = _decode_token(next_token, user_id) if next_token else None
    items, last = store.query_page(settings.predictions_table, page_size, start, IndexName="by_user",
                                   KeyConditionExpression=_history_condition(user_id, since, until))
    return {"user_id": user_id, "history": [_history_row(i) for i in items], "page_size": page_size,
            "next_token": _encode_token(last) if last else None}


def _history_condition(user_id: str, since: float | None, until: float | None):
    condition = Key("user_id").eq(user_id)
    if since is not None and until is not None:
        condition &= Key("ts").between(store.to_item(since), store.to_item(until))
    elif since is not None:
        condition &= Key("ts").gte(store.to_item(since))
    elif until is not None:
        condition &= Key("ts").lte(store.to_item(until))
    return condition


def _history_row(item: dict) -> dict:
    return {"event_id": item["event_id"], "timestamp": item["ts"], "score": item["score"],
            "variant": item.get("variant")}


def history(settings: Settings, user_id: str, since: float | None, until: float | None,
            limit: int = 1000) -> list[dict]:
    items = store.query(settings.predictions_table, limit=limit, IndexName="by_user",
                        KeyConditionExpression=_history_condition(user_id, since, until))
    return [_history_row(i) for i in items]


def user_median(settings: Settings, user_id: str, window_seconds: float = MEDIAN_WINDOW_SECONDS) -> dict:
    """Median score of the user's events in the window that ends at their latest event (event time)."""
    latest = store.query(settings.predictions_table, limit=1, IndexName="by_user",
                         KeyConditionExpression=Key("user_id").eq(user_id), ScanIndexForward=False)
    if not latest:
        raise NotFound("user_not_found", f"no predictions for user {user_id!r}")
    end = latest[0]["ts"]
    items = history(settings, user_id, since=end - window_seconds + 1e-6, until=end, limit=100_000)
    scores = [i["score"] for i in items]
    return {"user_id": user_id, "median": statistics.median(scores), "window_seconds": window_seconds,
            "count": len(scores), "window_end": end}


def queue_depth(url: str) -> int:
    if not url:
        return 0
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def stats(settings: Settings) -> dict:
    counters: dict[str, float] = {}
    # "stats" + one "stream#<shard>" item per shard: a constant number of small items
    for item in store.scan_all(settings.state_table, FilterExpression="pk = :s OR begins_with(pk, :stream)",
                               ExpressionAttributeValues={":s": "stats", ":stream": "stream#"}):
        for name, value in item.items():
            if isinstance(value, (int, float)) and name != "counted_seq":
                counters[name] = counters.get(name, 0) + value
    config = batch_config.read(settings)
    median_of_medians, sampled = medians.median_of_medians(settings)
    events_cost = counters.get("cost_events_total", 0)
    return {
        "events_ingested": counters.get("events_ingested", 0),
        "events_rejected_at_api": counters.get("events_rejected_at_api", 0),
        "events_processed": counters.get("events_processed_by_stream", 0),
        "events_rejected": counters.get("events_rejected", 0),
        "events_duplicate": counters.get("events_duplicate", 0),
        "events_late": counters.get("events_late", 0),
        "events_predicted": counters.get("events_predicted", 0),
        "users_tracked": counters.get("users_tracked", 0),
        "median_of_medians": median_of_medians,
        "median_of_medians_sampled": sampled,
        "median_of_medians_sample_size": medians.SAMPLE_USERS,
        "batches": counters.get("batches", 0),
        "cost_per_1k_events_usd": (1000 * counters.get("cost_usd_total", 0) / events_cost) if events_cost else None,
        "current_batch_size": config.batch_size,
        "invoke_chunk_size": config.invoke_chunk_size,
        "stream_dlq_messages": queue_depth(settings.stream_dlq_url),
        "quarantine_messages": queue_depth(settings.quarantine_queue_url),
    }


def recent_batches(settings: Settings, limit: int = 20) -> list[dict]:
    """Newest cost records first (today's partition, then yesterday's)."""
    batches: list[dict] = []
    now = time.time()
    for days_back in (0, 1):
        day = datetime.fromtimestamp(now - days_back * 86400, tz=timezone.utc).strftime("%Y-%m-%d")
        batches += store.query(settings.cost_table, limit=limit - len(batches),
                               KeyConditionExpression=Key("day").eq(day), ScanIndexForward=False)
        if len(batches) >= limit:
            break
    return batches


def _optimizer_view(settings: Settings, config: batch_config.BatchConfig) -> dict:
    """The optimizer's state as the API shows it: settings in force, last decision and why, training R²,
    guard rails (last change and its evaluation, rollbacks), decisions over time."""
    decision, state = config.optimizer, config.optimizer_state
    view = {
        "batch_size": config.batch_size,
        "batching_window_seconds": config.batching_window_seconds,
        "invoke_chunk_size": config.invoke_chunk_size,
        "latency_slo_seconds": settings.latency_slo_seconds,
        "range": [settings.min_batch_size, settings.max_batch_size],
    }
    if not decision:
        return view | {"status": "not trained yet", "reason": "no retrain has run; the deployed defaults apply"}
    return view | {
        "status": decision.get("status"), "purpose": decision.get("purpose"), "reason": decision.get("reason"),
        "trained_at": decision.get("trained_at"), "records": decision.get("records"),
        "r2_cost": decision.get("r2_cost"), "r2_latency": decision.get("r2_latency"),
        "latency_margin_seconds": decision.get("latency_margin_seconds"),
        "predicted_cost_per_event_usd": decision.get("predicted_cost_per_event"),
        "predicted_latency_seconds": decision.get("predicted_latency"),
        "previous_batch_size": decision.get("previous_batch_size"), "applied": decision.get("applied"),
        "workload": decision.get("workload"), "predicted_curve": decision.get("candidates"),
        "model_s3_key": decision.get("model_s3_key"),
        "last_change": state.get("last_change"), "last_evaluation": state.get("last_evaluation"),
        "rollbacks": state.get("rollbacks", []), "excluded_sizes": state.get("rejected", {}),
        "history": config.history,
    }


def model_status(settings: Settings) -> dict:
    from . import models

    config = batch_config.read(settings)
    live = models.live_view(settings)   # what a promotion made live, not only what the stack configured
    return {
        "endpoint": settings.endpoint_name,
        "model_version": live["variants"][0]["model_version"] if live["variants"] else settings.model_version,
        "configured_model_version": settings.model_version, "live": live, "feature_set": settings.feature_set,
        "batch_size": config.batch_size,
        "batching_window_seconds": config.batching_window_seconds,
        "invoke_chunk_size": config.invoke_chunk_size,
        "optimizer": _optimizer_view(settings, config),
    }


def recent_batches_view(settings: Settings, limit: int = 20) -> dict:
    """GET /batches/recent: the newest cost records and the optimizer's current setting and last decision."""
    config = batch_config.read(settings)
    optimizer = _optimizer_view(settings, config)
    keys = ("batch_size", "batching_window_seconds", "invoke_chunk_size", "status", "reason", "r2_cost",
            "r2_latency", "trained_at")
    return {"batches": recent_batches(settings, limit), "optimizer": {k: optimizer.get(k) for k in keys}}


def variant_stats(settings: Settings) -> dict:
    """GET /variants/stats: the A/B variants (live configuration) and, per variant and model version, the number
    of predictions and their mean score (counters kept by store_predictions on the "stats" item)."""
    from . import variants

    stats_item = store.get_item(settings.state_table, {"pk": "stats"}) or {}
    by_key: dict[tuple[str, str], dict] = {}
    for name, value in stats_item.items():
        if not name.startswith("variant#") or not isinstance(value, (int, float)):
            continue
        _, variant, version, field = name.split("#", 3)
        entry = by_key.setdefault((variant, version), {"variant": variant, "model_version": version,
                                                       "predictions": 0, "score_sum": 0.0})
        entry["predictions" if field == "n" else "score_sum"] = value
    rows = []
    for entry in sorted(by_key.values(), key=lambda e: (e["variant"], e["model_version"])):
        n = entry.pop("predictions")
        total = entry.pop("score_sum")
        rows.append(entry | {"predictions": int(n), "mean_score": round(total / n, 6) if n else None})
    total = sum(r["predictions"] for r in rows)
    for row in rows:
        row["share"] = round(row["predictions"] / total, 6) if total else None
    live = variants.live_variants(settings)
    return {"assignment": "sticky per user: sha256(user_id) against the cumulative variant weights",
            "variants": [{"name": v.name, "weight": v.weight, "kind": v.kind, "model_version": v.model_version}
                         for v in live],
            "stats": rows, "predictions": total}
