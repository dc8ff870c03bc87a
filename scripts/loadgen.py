"""Load generator: synthetic events to the HTTP API at a target rate.

    python scripts/loadgen.py --url http://127.0.0.1:8000 --rate 500 --duration 10 --users 300 \
        --bad-fraction 0.02 --duplicate-fraction 0.02 --seed 7

Events come from the same seeded synthetic stream the model was trained on (model/synthetic.py), stamped with
the current time. A fraction are deliberately invalid (the API must reject them with reasons) and a fraction are
resent with an event_id already sent (client retries: the pipeline must count them once).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from model.synthetic import make_event, make_users  # noqa: E402

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


def generate(count: int, users: int, seed: int, bad_fraction: float, duplicate_fraction: float,
             id_prefix: str = "evt"):
    """Yield (event, kind) with kind in {"good", "bad", "duplicate"}; deterministic for a seed."""
    rng = random.Random(seed)
    population = make_users(users, rng)
    sent_good: list[dict] = []
    for n in range(count):
        roll = rng.random()
        if sent_good and roll < duplicate_fraction:
            yield dict(rng.choice(sent_good)), "duplicate"
            continue
        event = make_event(rng.choice(population), time.time(), rng, f"{id_prefix}-{seed}-{n:07d}")
        if roll < duplicate_fraction + bad_fraction:
            yield rng.choice(BAD_EVENT_KINDS)(event), "bad"
        else:
            sent_good.append(event)
            yield event, "good"


def post_events(url: str, events: list[dict], timeout: float = 30.0) -> dict:
    request = urllib.request.Request(f"{url.rstrip('/')}/events", data=json.dumps({"events": events}).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def run(url: str, events: int, rate: float, users: int = 300, seed: int = 7, bad_fraction: float = 0.02,
        duplicate_fraction: float = 0.02, per_request: int = 50, concurrency: int = 4,
        progress=None) -> LoadResult:
    """Send ``events`` events at ``rate`` events/s in requests of ``per_request`` events."""
    result = LoadResult()
    lock = threading.Lock()
    batches: list[list[tuple[dict, str]]] = []
    current: list[tuple[dict, str]] = []
    for item in generate(events, users, seed, bad_fraction, duplicate_fraction):
        current.append(item)
        if len(current) == per_request:
            batches.append(current)
            current = []
    if current:
        batches.append(current)

    def send(batch: list[tuple[dict, str]]) -> None:
        payload = [e for e, _ in batch]
        try:
            body = post_events(url, payload)
        except (urllib.error.URLError, OSError, ValueError) as exc:
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
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (events = rate x duration)")
    parser.add_argument("--events", type=int, help="number of events (overrides --duration)")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bad-fraction", type=float, default=0.02)
    parser.add_argument("--duplicate-fraction", type=float, default=0.02)
    parser.add_argument("--per-request", type=int, default=50, help="events per POST /events (max 500)")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    if not 0 <= args.bad_fraction + args.duplicate_fraction < 1:
        parser.error("--bad-fraction + --duplicate-fraction must be in [0, 1)")
    if not 1 <= args.per_request <= 500:
        parser.error("--per-request must be 1..500")
    total = args.events or int(args.rate * args.duration)
    result = run(args.url, total, args.rate, args.users, args.seed, args.bad_fraction, args.duplicate_fraction,
                 args.per_request, args.concurrency,
                 progress=lambda done, n: print(f"\rsent {done}/{n}", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    print(json.dumps({"sent": result.sent, "accepted": result.accepted, "unique_accepted": result.unique_accepted,
                      "rejected": result.rejected, "failed": result.failed, "bad_sent": result.bad_sent,
                      "duplicates_sent": result.duplicates_sent, "seconds": round(result.seconds, 2),
                      "request_errors": result.request_errors[:5]}, indent=2))
    return 0 if not result.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
