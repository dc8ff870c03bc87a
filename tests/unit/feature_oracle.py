"""A brute-force oracle for the streaming features: every value recomputed from the full event log.

Written from the definitions in pipeline/features.py's docstring (revision 2, tiled windows), without any of its
code (no tiles, no state, no roll-ups, no prefix sums): for each event, the windows are filtered from the list of
every earlier-arrived on-time event of the same user by the 5-minute tile each event falls in. Slow on purpose
and easy to read. Times are integer milliseconds, as the event schema keeps them.
"""
from __future__ import annotations

import math
import statistics
from datetime import datetime, timezone

HOUR, DAY, WEEK = 3_600_000, 86_400_000, 7 * 86_400_000   # milliseconds
FINE = 300_000                                              # the 5-minute tile
LATENESS = HOUR
SESSION_GAP = 1_800_000
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "login", "logout")
DEVICES = ("mobile", "desktop", "tablet")
PRIORITIES = ("low", "medium", "high")
POINTS = {"view": 1, "click": 2, "add_to_cart": 5, "purchase": 10, "login": 0, "logout": 0}
LONGEST = {"v1": DAY, "v2": WEEK}


def ms(event: dict) -> int:
    return round(round(float(event["timestamp"]), 3) * 1000)


def tile(t: int) -> int:
    return t // FINE


def _in(seen: list[dict], t: int, width: int, resolution: int) -> list[dict]:
    """The events whose 5-minute tile lies from floor(t - width, resolution) to the tile of t, inclusive."""
    start = (t - width) // resolution * resolution
    return [x for x in seen if tile(start) <= tile(ms(x)) <= tile(t)]


def vector(history: list[dict], event: dict, feature_set: str) -> dict[str, float]:
    """Features of ``event`` given ``history``: the user's on-time events that arrived before it."""
    t = ms(event)
    seen = history + [event]
    day = _in(seen, t, DAY, HOUR)
    purchases = [x for x in day if x["event_type"] == "purchase"]
    views = [x for x in day if x["event_type"] == "view"]
    newest = max((ms(x) for x in history), default=None)
    if newest is None or (t >= newest and t - newest >= LONGEST[feature_set]):
        since_prev = WEEK / 1000
    elif t < newest:
        since_prev = 0.0
    else:
        since_prev = (t - newest) / 1000
    when = datetime.fromtimestamp(t / 1000, tz=timezone.utc)
    amount_sum = sum(x.get("amount") or 0.0 for x in purchases)
    f = {
        "events_1h": len(_in(seen, t, HOUR, FINE)),
        "events_24h": len(day),
        "purchases_24h": len(purchases),
        "views_24h": len(views),
        "amount_sum_24h": amount_sum,
        "amount_avg_24h": amount_sum / len(purchases) if purchases else 0.0,
        "seconds_since_prev": since_prev,
        "hour_of_day": when.hour,
        "is_weekend": 1.0 if when.weekday() >= 5 else 0.0,
        "event_type_code": EVENT_TYPES.index(event["event_type"]),
        "amount": event.get("amount") or 0.0,
        "device_code": DEVICES.index(event["device_type"]) if event.get("device_type") else -1,
        "priority_code": PRIORITIES.index(event.get("priority", "medium")),
        "purchase_view_ratio_24h": len(purchases) / len(views) if views else float(len(purchases)),
        "distinct_devices_24h": len({x["device_type"] for x in day if x.get("device_type")}),
    }
    if feature_set == "v1":
        return f
    week = _in(seen, t, WEEK, HOUR)
    week_purchases = [x.get("amount") or 0.0 for x in week if x["event_type"] == "purchase"]
    times = sorted(ms(x) for x in seen if tile(ms(x)) <= tile(t))  # up to and including the event's own tile
    start = len(times) - 1
    while start > 0 and times[start] - times[start - 1] < SESSION_GAP:
        start -= 1
    day_times = sorted(ms(x) for x in day)
    points = sum(POINTS[x["event_type"]] for x in day)
    f |= {
        "events_6h": len(_in(seen, t, 6 * HOUR, HOUR)),
        "events_7d": len(week),
        "purchases_7d": len(week_purchases),
        "amount_sum_7d": sum(week_purchases),
        "amount_avg_7d": sum(week_purchases) / len(week_purchases) if week_purchases else 0.0,
        "clicks_24h": sum(1 for x in day if x["event_type"] == "click"),
        "session_events": len(times) - start,
        "session_seconds": (times[-1] - times[start]) / 1000,
        "sessions_24h": 1 + sum(1 for a, b in zip(day_times, day_times[1:]) if b - a >= SESSION_GAP),
        "engagement_score_24h": 100.0 * (1.0 - math.exp(-points / 50.0)),
    }
    return f


def replay(arrivals: list[dict], feature_set: str) -> dict[str, dict]:
    """Every unique event in arrival order -> {"late": bool, "features": {...} (None for late events)}."""
    history: dict[str, list[dict]] = {}
    seen_ids: set[str] = set()
    out: dict[str, dict] = {}
    for event in arrivals:
        if event["event_id"] in seen_ids:
            continue  # a client retry of an event already counted
        seen_ids.add(event["event_id"])
        mine = history.setdefault(event["user_id"], [])
        newest = max((ms(x) for x in mine), default=None)
        late = newest is not None and ms(event) < newest - LATENESS
        out[event["event_id"]] = {"late": late, "features": None if late else vector(mine, event, feature_set)}
        if not late:
            mine.append(event)
    return out


def user_median(scored: list[tuple[float, float]], window: float) -> float:
    """Median score over (latest - window, latest] of one user's (timestamp, score) pairs."""
    end = max(ts for ts, _ in scored)
    return statistics.median(s for ts, s in scored if ts > end - window)
