"""Query the HTTP API and pretty-print the answer.

    python scripts/query.py stats
    python scripts/query.py prediction <event_id>
    python scripts/query.py features <user_id> [name]
    python scripts/query.py median <user_id>
    python scripts/query.py history <user_id> [--since T] [--until T] [--next-token TOKEN | --all]
    python scripts/query.py batches [--limit N]
    python scripts/query.py model                # live variants and versions, batch settings, optimizer
    python scripts/query.py models               # registered model versions, which is live
    python scripts/query.py stats --stack RealtimeInference          # a deployed stack (SigV4, boto3 chain)

Where the API is and how requests are signed: scripts/client.py (--target, --url, --stack, --sign).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.client import ClientError, add_target_arguments, client_from_args, quote_segment  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["stats", "prediction", "features", "median", "history", "batches", "model",
                                                 "models"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--since")
    parser.add_argument("--until")
    parser.add_argument("--limit", type=int, default=None, help="batches: records (default 10); history: rows per "
                                                                  "page (default: the API's, 100)")
    parser.add_argument("--next-token", help="history: the page after the one that returned this token")
    parser.add_argument("--all", action="store_true", help="history: follow next_token to the last page")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    needs = {"prediction": 1, "features": 1, "median": 1, "history": 1}
    if len(args.args) < needs.get(args.what, 0):
        parser.error(f"{args.what} needs an id")
    ids = [quote_segment(a) for a in args.args]
    path, query = {
        "stats": lambda: ("/stats", None),
        "prediction": lambda: (f"/predictions/{ids[0]}", None),
        "features": lambda: (f"/users/{ids[0]}/features" + (f"/{ids[1]}" if len(ids) > 1 else ""), None),
        "median": lambda: (f"/users/{ids[0]}/median", None),
        "history": lambda: (f"/users/{ids[0]}/history", {"since": args.since, "until": args.until,
                                                          "limit": args.limit, "next_token": args.next_token}),
        "batches": lambda: ("/batches/recent", {"limit": args.limit or 10}),
        "model": lambda: ("/model/status", None),
        "models": lambda: ("/models", None),
    }[args.what]()
    try:
        api = client_from_args(args)
        response = api.get(path, query)
        body = response.json()
        while args.what == "history" and args.all and response.ok and body.get("next_token"):
            response = api.get(path, query | {"next_token": body["next_token"]})
            page = response.json()
            body = page | {"history": body["history"] + page.get("history", [])}
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0 if response.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
