"""A seeded synthetic event stream, shared by model training (model/train.py) and the load generator.

Users have a latent purchase intent; it shapes which events they send. The training label is documented in
``label_probability``: it depends only on the served features, so the model's AUC on a held-out split is
meaningful.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

EVENT_MIX_LOW_INTENT = {"view": 0.62, "click": 0.2, "add_to_cart": 0.06, "purchase": 0.02, "login": 0.05,
                        "logout": 0.05}
EVENT_MIX_HIGH_INTENT = {"view": 0.35, "click": 0.2, "add_to_cart": 0.2, "purchase": 0.15, "login": 0.05,
                         "logout": 0.05}
DEVICES = ("mobile", "desktop", "tablet")
CATEGORIES = ("grocery", "electronics", "fashion", "travel", "games")
RATE_PER_HOUR = (0.5, 12.0)  # each user's event rate is uniform in this range: 6.25 events/h on average


@dataclass
class User:
    user_id: str
    intent: float
    device: str
    rate_per_hour: float


def make_users(count: int, rng: random.Random, prefix: str = "user") -> list[User]:
    return [User(f"{prefix}-{i:05d}", rng.betavariate(2, 5), rng.choices(DEVICES, (0.6, 0.3, 0.1))[0],
                 rng.uniform(*RATE_PER_HOUR)) for i in range(count)]


def users_for(events: int, hours: float) -> int:
    """How many users send about ``events`` events in ``hours`` hours (10 % headroom, so a stream cut at
    ``events`` covers nearly the whole span)."""
    return max(1, math.ceil(1.1 * events / (sum(RATE_PER_HOUR) / 2 * hours)))


def make_event(user: User, ts: float, rng: random.Random, event_id: str) -> dict:
    mix = {k: (1 - user.intent) * EVENT_MIX_LOW_INTENT[k] + user.intent * EVENT_MIX_HIGH_INTENT[k]
           for k in EVENT_MIX_LOW_INTENT}
    event_type = rng.choices(list(mix), list(mix.values()))[0]
    event = {"event_id": event_id, "user_id": user.user_id, "event_type": event_type, "timestamp": round(ts, 3),
             "device_type": user.device if rng.random() < 0.9 else rng.choice(DEVICES),
             "priority": rng.choices(("low", "medium", "high"), (0.2, 0.7, 0.1))[0]}
    if event_type in ("purchase", "add_to_cart"):
        event["amount"] = round(rng.lognormvariate(3.2 + user.intent, 0.8), 2)
        event["merchant_category"] = rng.choice(CATEGORIES)
    return event


def stream(users: list[User], start: float, duration: float, rng: random.Random, id_prefix: str = "evt"):
    """All users' events in time order over [start, start + duration)."""
    events = []
    for user in users:
        ts = start + rng.expovariate(user.rate_per_hour / 3600)
        while ts < start + duration:
            events.append((ts, user))
            ts += rng.expovariate(user.rate_per_hour / 3600)
    events.sort(key=lambda pair: pair[0])
    for n, (ts, user) in enumerate(events):
        yield make_event(user, ts, rng, f"{id_prefix}-{n:08d}")


def label_probability(f: dict[str, float]) -> float:
    """P(label = 1 | features): the documented ground truth the model learns.

    logit = -2.9 + 1.4 * min(purchase_view_ratio_24h, 2) + 0.35 * ln(1 + events_1h)
            + 0.9 * [event is add_to_cart] + 0.004 * min(amount_sum_24h, 400) + 0.3 * [device is mobile]
    """
    logit = (-2.9 + 1.4 * min(f["purchase_view_ratio_24h"], 2.0) + 0.35 * math.log1p(f["events_1h"])
             + 0.9 * (f["event_type_code"] == 2) + 0.004 * min(f["amount_sum_24h"], 400.0)
             + 0.3 * (f["device_code"] == 0))
    return 1.0 / (1.0 + math.exp(-logit))
