"""The three steps of the inference state machine: invoke the model, store predictions, record cost."""
from __future__ import annotations

import json
import statistics
import time
from datetime import datetime, timezone
from typing import cast

from . import aws, batch_config, costs, medians, model_client, store, variants
from .features import FeatureSetError, feature_names
from .flow import ExecutionInput, Prediction, Row, Scored, Stage, Stored
from .settings import Settings, function_memory_mb

PREDICTION_TTL_SECONDS = 30 * 24 * 3600
MAX_INLINE_OUTPUT_BYTES = 200_000  # Step Functions caps state output at 256 KB; larger predictions go through S3


def _stage(name: str, started: float, **extra) -> Stage:
    return cast(Stage, {"stage": name, "seconds": round(time.perf_counter() - started, 6),
                        "memory_mb": function_memory_mb(), **extra})


def load_rows(state: ExecutionInput) -> list[Row]:
    """The batch's rows: inline, or in the batch journal (or a plain rows object) on S3."""
    if state["rows_s3_uri"]:
        body = aws.get_json_uri(state["rows_s3_uri"])
        return body["rows"] if isinstance(body, dict) else body
    return state["rows"]


def load_predictions(state: Scored) -> list[Prediction]:
    if state["predictions_s3_uri"]:
        return aws.get_json_uri(state["predictions_s3_uri"])
    return state["predictions"]


def current_chunk_size(settings: Settings) -> int:
    """The invocation chunk size the optimizer applied (STATE_TABLE "config"), else the deployed default."""
    return batch_config.read(settings).invoke_chunk_size


def score_rows(rows: list[Row], settings: Settings, chunk: int) -> tuple[list[Prediction], int, float]:
    """Score rows, each user on their sticky A/B variant (pipeline/variants.py): one group of chunked InvokeEndpoint
    calls per variant, on the variant's endpoint (serverless mode: one endpoint per variant) with TargetVariant when
    that endpoint hosts several variants (instance mode). Predictions keep the rows' order and carry the variant
    that answered and its model version. (predictions, calls, model seconds)"""
    live = variants.live_variants(settings)
    where = variants.targets(live, settings.endpoint_name)
    groups: dict[str, list[int]] = {}
    chosen: dict[str, variants.VariantSpec | None] = {}
    for index, row in enumerate(rows):
        variant = variants.assign(row["user_id"], live) if len(live) > 1 else (live[0] if live else None)
        name = variant.name if variant else ""
        chosen[name] = variant
        groups.setdefault(name, []).append(index)
    predictions: list[Prediction | None] = [None] * len(rows)
    calls, seconds = 0, 0.0
    for name, indexes in groups.items():
        target = where.get(name) or variants.Target(settings.endpoint_name, None)
        scored = model_client.invoke(target.endpoint, [rows[i]["features"] for i in indexes], chunk,
                                     target_variant=target.target_variant)
        calls += scored.calls
        seconds += scored.seconds
        spec = chosen[name]
        version = spec.model_version if spec else settings.model_version
        for i, score, answered in zip(indexes, scored.scores, scored.variants, strict=False):
            r = rows[i]
            predictions[i] = {"event_id": r["event_id"], "user_id": r["user_id"], "ts": r["ts"],
                              "ingest_ts": r["ingest_ts"], "score": round(score, 6), "variant": answered or name,
                              "model_version": version or settings.model_version}
    return cast(list[Prediction], predictions), calls, seconds  # every row is in one of the groups


def invoke_model(state: ExecutionInput, settings: Settings) -> Scored:
    started = time.perf_counter()
    if state["feature_set"] != settings.feature_set:
        raise model_client.ModelError(
            f"batch has feature set {state['feature_set']!r}; the model serves {settings.feature_set!r}")
    rows = load_rows(state)
    width = len(feature_names(settings.feature_set))
    wrong = [r["event_id"] for r in rows if len(r["features"]) != width]
    if wrong:  # never send a model vectors of another feature set: it would score them silently
        raise FeatureSetError(f"{len(wrong)} rows (first {wrong[0]!r}) do not have the {width} features of "
                              f"feature set {settings.feature_set!r}")
    chunk = current_chunk_size(settings)
    predictions, calls, model_seconds = score_rows(rows, settings, chunk)
    model_bytes = sum(len(model_client.to_csv([r["features"]])) for r in rows)
    stage = _stage("invoke_model", started, chunk_size=chunk, calls=calls, model_seconds=model_seconds,
                   model_bytes=model_bytes, s3_gets=int(bool(state["rows_s3_uri"])))
    output: Scored = {
        "batch_id": state["batch_id"], "created_at": state["created_at"], "model_version": settings.model_version,
        "predictions": predictions, "predictions_s3_uri": None, "stages": state["stages"] + [stage]}
    if len(json.dumps(predictions, separators=(",", ":"))) > MAX_INLINE_OUTPUT_BYTES:  # state < Step Functions' 256 KB
        uri = aws.put_json(settings.artifacts_bucket, f"predictions/{state['batch_id']}.json", predictions)
        output["predictions"], output["predictions_s3_uri"] = [], uri
        stage["s3_puts"] = 1
    return output


def store_predictions(state: Scored, settings: Settings) -> Stored:
    started = time.perf_counter()
    now = time.time()
    predictions = load_predictions(state)
    items = [{"model_version": state["model_version"], **p, "batch_id": state["batch_id"], "predicted_at": now,
              "expires_at": int(now + PREDICTION_TTL_SECONDS)} for p in predictions]
    with store.metered() as meter:
        store.batch_put(settings.predictions_table, items, ("event_id",), index_copies=1)  # by_user (projection ALL)
        store.add_counters(settings.state_table, "stats", {"events_predicted": len(items), "batches": 1,
                                                           **variant_counters(items)})
        sampled = medians.update_sample(settings, predictions)
    latencies = sorted(now - p["ingest_ts"] for p in predictions)
    ingest = [p["ingest_ts"] for p in predictions]
    return {
        "batch_id": state["batch_id"], "created_at": state["created_at"], "events": len(items),
        "latency_p50": statistics.median(latencies) if latencies else 0.0,
        "latency_max": latencies[-1] if latencies else 0.0,
        "latencies": latencies,  # per event, for the latency metric; the handler takes it out of the state
        # workload figures for the cost record: arrival span and ingest requests (the API stamps one ingest_ts
        # per request, so distinct stamps count the requests that carried this batch)
        "ingest_first": min(ingest) if ingest else None, "ingest_last": max(ingest) if ingest else None,
        "api_requests": len(set(ingest)),
        "stages": state["stages"] + [_stage("store_predictions", started, ddb_rru=meter.rru, ddb_wru=meter.wru,
                                            sampled_users=sampled, s3_gets=int(bool(state["predictions_s3_uri"])))],
    }


def variant_counters(items: list[dict]) -> dict[str, float]:
    """Per (variant, model version): predictions and the sum of their scores, as "variant#<name>#<version>#n|sum"
    counters on the STATE_TABLE "stats" item (same UpdateItem as events_predicted; GET /variants/stats reads them)."""
    counters: dict[str, float] = {}
    for p in items:
        key = f"variant#{p.get('variant') or 'default'}#{p.get('model_version') or ''}"
        counters[f"{key}#n"] = counters.get(f"{key}#n", 0) + 1
        counters[f"{key}#sum"] = round(counters.get(f"{key}#sum", 0.0) + float(p["score"]), 6)
    return counters


def record_cost(state: Stored, settings: Settings) -> dict:
    """One cost record per batch (COST_TABLE): settings in force, workload, measured durations per stage,
    $ per cost line, $ per event, latency. Also the figures for the EMF metrics (the handler emits them)."""
    started = time.perf_counter()
    with store.metered() as reads:
        config = batch_config.read(settings)
    stages = state["stages"]
    stream: dict = dict(next((s for s in stages if s["stage"] == "process_stream"), {}))
    invoke: dict = dict(next((s for s in stages if s["stage"] == "invoke_model"), {}))
    events = state["events"]
    window = float(config.batching_window_seconds)
    first, last = state.get("ingest_first"), state.get("ingest_last")
    span = costs.span_seconds(events, first, last, window)
    now = time.time()
    # this function's own duration as measured up to here (its two writes below are not in it)
    # its two writes come after this figure: the cost record (~2 KB, 2 WRU) and the stats counters (1 WRU)
    stages = stages + [_stage("record_cost", started, ddb_rru=reads.rru, ddb_wru=3)]
    usage = costs.BatchUsage(
        events=events, event_bytes=stream.get("bytes", 0), lambda_stages=stages,
        sfn_seconds=now - state["created_at"], model_seconds=invoke.get("model_seconds", 0.0),
        model_bytes=invoke.get("model_bytes", 0),
        ddb_rru=sum(s.get("ddb_rru", 0) for s in stages), ddb_wru=sum(s.get("ddb_wru", 0) for s in stages),
        s3_puts=sum(s.get("s3_puts", 0) for s in stages), s3_gets=sum(s.get("s3_gets", 0) for s in stages),
        span_seconds=span, api_requests=int(state.get("api_requests", 0)))
    cost = costs.batch_cost(usage, costs.Deployment.from_env())
    day = datetime.fromtimestamp(now, tz=timezone.utc)
    per_event = max(events, 1)
    record = {
        "day": day.strftime("%Y-%m-%d"), "batch_key": f"{day.isoformat()}#{state['batch_id']}",
        "batch_id": state["batch_id"],
        # settings in force (the optimizer's decision variables) and what the batch turned out to be
        "configured_batch_size": config.batch_size,
        "configured_window_seconds": window,
        "batch_size": stream.get("events", events), "events": events,
        "bytes": stream.get("bytes", 0), "chunk_size": invoke.get("chunk_size", 0),
        # workload: per-shard arrival rate over the batch's span, event size, ingest requests
        "span_seconds": round(span, 6), "arrival_rate": round(events / span, 6) if span else 0.0,
        "api_requests": usage.api_requests,
        "stage_seconds": {s["stage"]: s["seconds"] for s in stages},
        "cost_usd": {k: round(v, 12) for k, v in cost.items()},
        "cost_per_event_usd": cost["total"] / per_event,
        "tunable_cost_per_event_usd": cost["tunable"] / per_event,
        "latency_p50": state["latency_p50"], "latency_max": state["latency_max"],
        # what the oldest event waited before process_stream started (batching window, poll, backlog)
        "wait_seconds": round(max(0.0, state["created_at"] - stream.get("seconds", 0.0) - first), 6)
        if first is not None else None,
        "pipeline_seconds": now - state["created_at"], "recorded_at": now,
    }
    store.put_item(settings.cost_table, record)
    store.add_counters(settings.state_table, "stats", {"cost_usd_total": round(cost["total"], 12),
                                                       "cost_events_total": events})
    return record
