"""Send test events to the HTTP API: a JSON or NDJSON file, or N generated events.

    python scripts/send_events.py --count 20                  # 20 synthetic events to the local cloud
    python scripts/send_events.py --count 20 --seed 3         # the same 20 events (same ids) on every run
    python scripts/send_events.py events.ndjson               # a file of your own (JSON list, {"events": [...]}, NDJSON)
    python scripts/send_events.py --count 5 --user alice --url http://127.0.0.1:8000
    python scripts/send_events.py --count 20 --stack RealtimeInference            # AWS: SigV4-signed (boto3 chain)
    python scripts/send_events.py --count 20 --target localstack --stack RealtimeInference

Where the API is and how requests are signed: scripts/client.py (--target, --url, --stack, --sign).
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.client import ClientError, add_target_arguments, client_from_args  # noqa: E402
from scripts.loadgen import generate, post_events  # noqa: E402

PER_REQUEST = 500  # the API's limit per POST /events


def load_file(path: Path) -> list[dict]:
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return data["events"] if isinstance(data, dict) and "events" in data else data if isinstance(data, list) else [data]


def synthetic_events(count: int, user: str | None = None, seed: int | None = None) -> list[dict]:
    """``count`` valid events; without ``seed`` a fresh seed and a run id in every event_id, so ids never repeat
    across runs (a repeated id is a client duplicate to the pipeline)."""
    prefix = "manual" if seed is not None else f"manual-{secrets.token_hex(4)}"
    seed = secrets.randbelow(2**31) if seed is None else seed
    events = [e for e, _ in generate(count, users=5, seed=seed, bad_fraction=0, duplicate_fraction=0,
                                     id_prefix=prefix, history_hours=0)]
    return [e | {"user_id": user} for e in events] if user else events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--user", help="send every generated event as this user_id")
    parser.add_argument("--seed", type=int, default=None,
                        help="repeat a run: the same events and event ids (default: new ids on every run, so a "
                             "second run is not taken for duplicates)")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    events = load_file(args.file) if args.file else synthetic_events(args.count, args.user, args.seed)
    try:
        api = client_from_args(args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    accepted = 0
    for start in range(0, len(events), PER_REQUEST):
        try:
            response = post_events(api, events[start:start + PER_REQUEST])
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if not response.ok:
            print(f"HTTP {response.status}: {response.body.decode('utf-8', 'replace')}", file=sys.stderr)
            return 1
        body = response.json()
        accepted += body["accepted"]
        for rejected in body["rejected"]:
            print(f"rejected #{start + rejected['index']} {rejected.get('event_id')}: {'; '.join(rejected['errors'])}")
        if len(events) > PER_REQUEST:
            print(f"sent {min(start + PER_REQUEST, len(events))}/{len(events)}", file=sys.stderr, flush=True)
    print(f"accepted {accepted} of {len(events)}; first event_id {events[0]['event_id'] if events else '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
