"""Writing the decision back (the scheduled retrain_batch_size function): the fitted models and their metrics to
the artifacts bucket (optimizer/<time>/), BatchSize and MaximumBatchingWindowInSeconds to the event source mapping,
and the decision with the optimizer state to the STATE_TABLE "config" item (pipeline/batch_config.py)."""
from __future__ import annotations

import io
import json
import pickle
import time
from dataclasses import asdict
from datetime import datetime, timezone

from .. import aws, batch_config, store
from ..settings import Settings
from .model import FEATURES
from .policy import Decision
from .records import load_cost_records
from .rollback import decide, record_change


def save_models(settings: Settings, models: dict, decision: Decision, now: float) -> str:
    """The fitted models (pickle) and their metrics (JSON) under optimizer/<time>/; returns the models' key."""
    stamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    model_key = f"optimizer/{stamp}/model.pkl"
    buffer = io.BytesIO()
    pickle.dump({"models": models, "decision": asdict(decision)}, buffer)
    s3 = aws.client("s3")
    s3.put_object(Bucket=settings.artifacts_bucket, Key=model_key, Body=buffer.getvalue())
    s3.put_object(Bucket=settings.artifacts_bucket, Key=f"optimizer/{stamp}/metrics.json",
                  ContentType="application/json",
                  Body=json.dumps({"features": list(FEATURES), "records": decision.records,
                                   "r2_cost_oob": decision.r2_cost, "r2_latency_oob": decision.r2_latency,
                                   "latency_margin_seconds": decision.latency_margin_seconds,
                                   "decision": asdict(decision)}, default=float).encode())
    return model_key


def retrain_and_apply(settings: Settings, now: float | None = None) -> dict:
    """Read the cost records, decide, and apply: returns what the config item's "optimizer" field holds."""
    now = time.time() if now is None else now
    config = batch_config.read(settings)
    current, current_window = config.batch_size, config.batching_window_seconds
    records = load_cost_records(settings, now=now)
    decision, models, state = decide(records, settings, config, now)
    model_key = None if models is None else save_models(settings, models, decision, now)
    changed = (decision.batch_size, decision.batching_window_seconds) != (current, current_window)
    if changed and settings.event_source_mapping_id:
        aws.client("lambda").update_event_source_mapping(
            UUID=settings.event_source_mapping_id, BatchSize=decision.batch_size,
            MaximumBatchingWindowInSeconds=decision.batching_window_seconds)
    state = record_change(state, decision, current, current_window, now)
    optimizer = asdict(decision) | {"trained_at": now, "model_s3_key": model_key, "previous_batch_size": current,
                                    "applied": changed}
    history = config.history[-47:] + [{"at": now, "batch_size": decision.batch_size,
                                       "window": decision.batching_window_seconds, "status": decision.status}]
    store.put_item(settings.state_table, {
        "pk": "config", "batch_size": decision.batch_size, "invoke_chunk_size": decision.invoke_chunk_size,
        "batching_window_seconds": decision.batching_window_seconds,
        "optimizer": optimizer, "optimizer_state": state, "history": history, "updated_at": now})
    return optimizer
