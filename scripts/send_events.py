"""Send test events to the HTTP API: a JSON or NDJSON file, or N generated events.

    python scripts/send_events.py --count 20                  # 20 synthetic events
    python scripts/send_events.py events.ndjson               # a file of your own (JSON list, {"events": [...]}, NDJSON)
    python scripts/send_events.py --url http://127.0.0.1:8000 --count 5 --user alice
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.loadgen import generate, post_events  # noqa: E402


def load_file(path: Path) -> list[dict]:
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return data["events"] if isinstance(data, dict) and "events" in data else data if isinstance(data, list) else [data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--user", help="send every generated event as this user_id")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.file:
        events = load_file(args.file)
    else:
        events = [e for e, _ in generate(args.count, users=5, seed=args.seed, bad_fraction=0, duplicate_fraction=0,
                                         id_prefix="manual", history_hours=0)]
        if args.user:
            events = [e | {"user_id": args.user} for e in events]
    accepted = 0
    for start in range(0, len(events), 500):
        try:
            body = post_events(args.url, events[start:start + 500])
        except urllib.error.HTTPError as exc:
            print(f"HTTP {exc.code}: {exc.read().decode()}", file=sys.stderr)
            return 1
        except urllib.error.URLError as exc:
            print(f"cannot reach {args.url} ({exc.reason}); is `make up` running?", file=sys.stderr)
            return 1
        accepted += body["accepted"]
        for rejected in body["rejected"]:
            print(f"rejected #{start + rejected['index']} {rejected.get('event_id')}: {'; '.join(rejected['errors'])}")
    print(f"accepted {accepted} of {len(events)}; first event_id {events[0]['event_id'] if events else '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
