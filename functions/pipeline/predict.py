"""POST /predict: score events on demand against each user's current features, without changing any state."""
from __future__ import annotations

import time

from . import store
from .events import validate_event
from .inference import score_rows
from .features import FeatureState
from .ingest import MAX_EVENTS_PER_REQUEST, BadRequest
from .settings import Settings


def predict_instances(instances: list, settings: Settings) -> list[dict]:
    if len(instances) > MAX_EVENTS_PER_REQUEST:
        raise BadRequest("too_many_events", f"at most {MAX_EVENTS_PER_REQUEST} instances per request", 413)
    events = []
    for index, raw in enumerate(instances):
        event, errors = validate_event(raw, now=time.time())
        if event is None:
            raise BadRequest("invalid_instance", f"instance {index}: {'; '.join(errors)}")
        events.append(event)
    stored = {item["user_id"]: item for item in store.batch_get(
        settings.features_table, [{"user_id": e.user_id, "feature_set": settings.feature_set} for e in events],
        attributes=("state",))}
    states = {u: FeatureState.from_json(item.get("state"), settings.feature_set) for u, item in stored.items()}
    rows = [states.setdefault(e.user_id, FeatureState(settings.feature_set)).add(e)  # local copies only
            for e in events]
    # each user on their sticky A/B variant, as in the pipeline (pipeline/variants.py)
    scored, _, _ = score_rows([{"event_id": e.event_id, "user_id": e.user_id, "ts": 0.0, "ingest_ts": 0.0,
                                "features": row} for e, row in zip(events, rows)], settings, settings.invoke_chunk_size)
    return [{"event_id": p["event_id"], "user_id": p["user_id"], "score": p["score"], "variant": p["variant"],
             "feature_set": settings.feature_set, "model_version": p["model_version"]} for p in scored]
