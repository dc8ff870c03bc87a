"""Load generator: synthetic events to the HTTP API at a target rate.

    python scripts/loadgen.py --rate 500 --events 5000 --seed 7                  # the local cloud
    python scripts/loadgen.py --rate 50 --events 2000 --stack RealtimeInference   # AWS (SigV4, boto3 chain)

Where the API is and how requests are signed: scripts/client.py (--target, --url, --stack, --sign).

Events come from the same seeded synthetic stream the model was trained on (model/synthetic.py). By default the
generator replays ``--history-hours`` (24) of event time: a population of users sized to send ``--events`` events
in that span, each event stamped with its place in the span, sent in event-time order as fast as ``--rate`` allows.
The per-user features (events in the last hour and day, gaps between events) then have the distribution the model
was trained on, so the drift monitor has nothing to report; stamping every event with the current time instead
(``--history-hours 0``) packs a day of activity into seconds and does drift. Latency is measured from the API's
ingest time, not the event timestamp, so a replay does not distort it.

A fraction are deliberately invalid (the API must reject them with reasons) and a fraction are resent with an
event_id already sent (client retries: the pipeline must count them once). User ids carry the seed, so a run with
another seed does not arrive as late events for the users of an earlier run.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model.synthetic import make_event, make_users, stream, users_for  # noqa: E402
from scripts.progress import progress  # noqa: E402
from scripts.client import ApiClient, ClientError, Response, add_target_arguments, client_from_args, \
    local_client  # noqa: E402

BAD_EVENT_KINDS = (
    lambda e: {k: v for k, v in e.items() if k != "user_id"},
    lambda e: e | {"event_type": "teleport"},
    lambda e: e | {"amount": -5},
    lambda e: e | {"timestamp": "not-a-time"},
)


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0  # could not be delivered (HTTP error or "failed" entries): the client would retry them
    duplicates_sent: int = 0
    bad_sent: int = 0
    requests: int = 0
    request_errors: list[str] = field(default_factory=list)
    accepted_ids: set[str] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def unique_accepted(self) -> int:
        return len(self.accepted_ids)


def population_size(count: int, users: int | None, history_hours: float) -> int:
    """``users`` if given, else as many as send ``count`` events in a replay of ``history_hours`` (300 when every
    event is stamped with the current time)."""
    return users or (users_for(count, history_hours) if history_hours > 0 else 300)


def generate(count: int, users: int | None, seed: int, bad_fraction: float, duplicate_fraction: float,
             id_prefix: str = "evt", history_hours: float = 24.0, now: float | None = None):
    """Yield ``count`` (event, kind) pairs with kind in {"good", "bad", "duplicate"}; deterministic for a seed
    (and ``now``).

    ``history_hours`` > 0 replays that span of event time ending at ``now``; ``users`` defaults to as many as send
    ``count`` events in the span (more users fill it sooner, and the replay stops at ``count``). With
    ``history_hours`` = 0 every event is stamped with the time it is generated."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    users = population_size(count, users, history_hours)
    population = make_users(users, rng, f"user{seed}")
    if history_hours > 0:
        events = stream(population, now - history_hours * 3600, history_hours * 3600, rng)
    else:
        events = (make_event(rng.choice(population), time.time(), rng, "") for _ in range(count))
    sent_good: list[dict] = []
    for n in range(count):
        roll = rng.random()
        if sent_good and roll < duplicate_fraction:
            yield dict(rng.choice(sent_good)), "duplicate"
            continue
        try:
            event = next(events) | {"event_id": f"{id_prefix}-{seed}-{n:07d}"}
        except StopIteration:
            raise ValueError(f"{users} users send fewer than {count} events in {history_hours:g} h of event time: "
                             "use more users (or leave --users out to size the population)") from None
        if roll < duplicate_fraction + bad_fraction:
            yield rng.choice(BAD_EVENT_KINDS)(event), "bad"
        else:
            sent_good.append(event)
            yield event, "good"


def post_events(api: ApiClient, events: list[dict]) -> Response:
    """POST /events with ``{"events": [...]}`` (signed when ``api`` signs); the response, error statuses
    included."""
    return api.post_json("/events", {"events": events})


def run(api: ApiClient | str, events: int, rate: float, users: int | None = None, seed: int = 7,
        bad_fraction: float = 0.02, duplicate_fraction: float = 0.02, per_request: int = 50, concurrency: int = 4,
        history_hours: float = 24.0, progress=None) -> LoadResult:
    """Send ``events`` events at ``rate`` events/s in requests of ``per_request`` events. ``api``: an ApiClient
    (scripts/client.py), or the URL of a local cloud that does not require SigV4."""
    if isinstance(api, str):
        api = local_client(api)
    result = LoadResult()
    lock = threading.Lock()
    batches: list[list[tuple[dict, str]]] = []
    current: list[tuple[dict, str]] = []
    for item in generate(events, users, seed, bad_fraction, duplicate_fraction, history_hours=history_hours):
        current.append(item)
        if len(current) == per_request:
            batches.append(current)
            current = []
    if current:
        batches.append(current)

    def send(batch: list[tuple[dict, str]]) -> None:
        payload = [e for e, _ in batch]
        try:
            response = post_events(api, payload)
            if not response.ok:
                raise ClientError(f"HTTP {response.status}: {response.body[:300].decode('utf-8', 'replace')}")
            body = response.json()
        except (ClientError, ValueError) as exc:
            with lock:
                result.failed += len(batch)
                result.request_errors.append(str(exc))
            return
        rejected = {r["index"] for r in body.get("rejected", [])}
        failed = {f["index"] for f in body.get("failed", [])}
        with lock:
            result.requests += 1
            result.accepted += body.get("accepted", 0)
            result.rejected += len(rejected)
            result.failed += len(failed)
            for index, (event, _) in enumerate(batch):
                if index not in rejected and index not in failed:
                    result.accepted_ids.add(event["event_id"])

    started = time.perf_counter()
    sent = 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for batch in batches:
            due = started + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, batch)
            sent += len(batch)
            result.sent += len(batch)
            result.bad_sent += sum(1 for _, kind in batch if kind == "bad")
            result.duplicates_sent += sum(1 for _, kind in batch if kind == "duplicate")
            if progress:
                progress(sent, events)
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (events = rate x duration)")
    parser.add_argument("--events", type=int, help="number of events (overrides --duration)")
    parser.add_argument("--users", type=int,
                        help="users in the population (default: as many as send --events in --history-hours; 300 "
                             "with --history-hours 0)")
    parser.add_argument("--history-hours", type=float, default=24.0,
                        help="hours of event time to replay (0: stamp each event with the current time)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bad-fraction", type=float, default=0.02)
    parser.add_argument("--duplicate-fraction", type=float, default=0.02)
    parser.add_argument("--per-request", type=int, default=50, help="events per POST /events (max 500)")
    parser.add_argument("--concurrency", type=int, default=4)
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.bad_fraction + args.duplicate_fraction < 1:
        parser.error("--bad-fraction + --duplicate-fraction must be in [0, 1)")
    if not 1 <= args.per_request <= 500:
        parser.error("--per-request must be 1..500")
    total = args.events or int(args.rate * args.duration)
    if args.history_hours < 0:
        parser.error("--history-hours must be >= 0")
    try:
        api = client_from_args(args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"sending {total} events at {args.rate:g}/s to {api}", file=sys.stderr)
    try:
        with progress("events sent", total) as advance:
            result = run(api, total, args.rate, args.users, args.seed, args.bad_fraction, args.duplicate_fraction,
                         args.per_request, args.concurrency, args.history_hours,
                         progress=lambda done, n: advance(completed=done))
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps({"sent": result.sent, "accepted": result.accepted, "unique_accepted": result.unique_accepted,
                      "rejected": result.rejected, "failed": result.failed, "bad_sent": result.bad_sent,
                      "duplicates_sent": result.duplicates_sent, "seconds": round(result.seconds, 2),
                      "request_errors": result.request_errors[:5]}, indent=2))
    return 0 if not result.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
