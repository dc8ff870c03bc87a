"""POST /predict: score events on demand against each user's current features, without changing any state."""
from __future__ import annotations

import time

from .events import validate_event
from .flow import Row
from .inference import score_rows
from .ingest import MAX_EVENTS_PER_REQUEST, BadRequest
from .settings import Settings
from .stream import load_users


def predict_instances(instances: list, settings: Settings) -> list[dict]:
    if len(instances) > MAX_EVENTS_PER_REQUEST:
        raise BadRequest("too_many_events", f"at most {MAX_EVENTS_PER_REQUEST} instances per request", 413)
    events = []
    for index, raw in enumerate(instances):
        event, errors = validate_event(raw, now=time.time())
        if event is None:
            raise BadRequest("invalid_instance", f"instance {index}: {'; '.join(errors)}")
        events.append(event)
    states = {u: user.features for u, user in load_users(settings, {e.user_id for e in events},
                                                          settings.feature_set).items()}
    rows = [states[e.user_id].add(e) for e in events]  # local copies only: nothing is written back
    # each user on their sticky A/B variant, as in the pipeline (pipeline/variants.py)
    batch: list[Row] = [{"event_id": e.event_id, "user_id": e.user_id, "ts": 0.0, "ingest_ts": 0.0, "features": row}
                        for e, row in zip(events, rows, strict=True)]
    scored, _, _ = score_rows(batch, settings, settings.invoke_chunk_size)
    return [{"event_id": p["event_id"], "user_id": p["user_id"], "score": p["score"], "variant": p["variant"],
             "feature_set": settings.feature_set, "model_version": p["model_version"]} for p in scored]
