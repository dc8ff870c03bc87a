"""Feature vectors for drift tests: per-event vectors of a synthetic stream, drawn from the training distribution
(model/synthetic.py, another seed) or from a shifted population (more purchase intent, three times the event rate,
desktop users)."""
from __future__ import annotations

import io
import random
import tarfile
import time

import numpy as np

from model.synthetic import make_users, stream
from pipeline.events import Event
from pipeline.features import FeatureState


def event_features(users: int, hours: float, seed: int, shifted: bool = False) -> np.ndarray:
    rng = random.Random(seed)
    population = make_users(users, rng, prefix="drift")
    if shifted:
        for user in population:
            user.intent = min(1.0, user.intent + 0.4)
            user.rate_per_hour *= 3
            user.device = "desktop"
    return features_of(stream(population, time.time() - hours * 3600, hours * 3600, rng))


def features_of(events) -> np.ndarray:
    """Per-event feature vectors of raw events, in the order given, as the pipeline computes them."""
    states: dict[str, FeatureState] = {}
    rows = []
    for raw in events:
        event = Event.model_validate(raw)
        rows.append(states.setdefault(event.user_id, FeatureState("v1")).add(event))
    return np.asarray(rows, dtype=float)


def tar_gz(name: str, data: bytes) -> bytes:
    """A model.tar.gz holding one file, as the model artifacts hold theirs (xgboost-model, or baseline.json)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
