"""Query the HTTP API and pretty-print the answer.

    python scripts/query.py stats
    python scripts/query.py prediction <event_id>
    python scripts/query.py features <user_id> [name]
    python scripts/query.py median <user_id>
    python scripts/query.py history <user_id> [--since T] [--until T]
    python scripts/query.py batches [--limit N]
    python scripts/query.py model
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["stats", "prediction", "features", "median", "history", "batches", "model"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--since")
    parser.add_argument("--until")
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args(argv)
    quote = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    needs = {"prediction": 1, "features": 1, "median": 1, "history": 1}
    if len(args.args) < needs.get(args.what, 0):
        parser.error(f"{args.what} needs an id")
    path = {
        "stats": lambda: "/stats",
        "prediction": lambda: f"/predictions/{quote(args.args[0])}",
        "features": lambda: f"/users/{quote(args.args[0])}/features" + (
            f"/{quote(args.args[1])}" if len(args.args) > 1 else ""),
        "median": lambda: f"/users/{quote(args.args[0])}/median",
        "history": lambda: f"/users/{quote(args.args[0])}/history?" + urllib.parse.urlencode(
            {k: v for k, v in (("since", args.since), ("until", args.until)) if v}),
        "batches": lambda: f"/batches/recent?limit={args.limit}",
        "model": lambda: "/model/status",
    }[args.what]()
    try:
        status, body = get(args.url.rstrip("/") + path)
    except urllib.error.URLError as exc:
        print(f"cannot reach {args.url} ({exc.reason}); is `make up` running?", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0 if status < 400 else 1


if __name__ == "__main__":
    raise SystemExit(main())
