"""Replay what the pipeline set aside: the quarantine queue's failed batches and the stream DLQ's records (issue 13).

    python scripts/redrive.py                                  # the running `make up` local cloud
    python scripts/redrive.py --only quarantine                # or: --only dlq
    python scripts/redrive.py --stack RealtimeInference        # AWS (credentials from the environment)

Run it once the cause is fixed (the model is back, the throttling is over). It relies on the exactly-once effect
(README "Exactly-once effect"): predictions are keyed by event_id and overwrite, and process_stream recognises a
record it already applied, so a batch or a range that was partly done before ends up stored once.
- quarantine: each message is a failed batch's state. The batch is started again (a batch that failed in
  InvokeModel from its own input, one that failed later from its batch journal) and the message deleted once the
  execution started; if it fails again, the state machine quarantines it again.
- DLQ: each message is Lambda's on-failure record of a Kinesis batch (shard and sequence range, not the records).
  The records are read back from the stream, while it retains them (24 h), and handed to the mapping's function as
  the mapping would; the message is deleted when every record was processed.
Prints one line per message (replayed, or why not). Exit status 0 when everything was replayed, 1 otherwise.
The code is functions/pipeline/reconcile.py (redrive_quarantined, redrive_dlq).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from scripts.reconcile import add_target_arguments, configure  # noqa: E402

NEEDED = {"ARTIFACTS_BUCKET": "ArtifactsBucketName", "STATE_MACHINE_ARN": "StateMachineArn",
          "QUARANTINE_QUEUE_URL": "QuarantineQueueUrl", "STREAM_DLQ_URL": "StreamDlqUrl"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("quarantine", "dlq"), help="replay one of the two (default both)")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    target = configure(args, NEEDED)

    from pipeline import reconcile
    from pipeline.settings import settings

    config = settings()
    say = (lambda message: None) if args.json else (lambda message: print(message, file=sys.stderr, flush=True))
    print(f"redriving on {target}", file=sys.stderr)
    outcome: list[reconcile.Replayed] = []
    if args.only in (None, "quarantine"):
        outcome += reconcile.redrive_quarantined(config, config.quarantine_queue_url, say)
    if args.only in (None, "dlq"):
        outcome += reconcile.redrive_dlq(config, config.stream_dlq_url, say)
    replayed, failed = [r for r in outcome if r.ok], [r for r in outcome if not r.ok]
    if args.json:
        print(json.dumps({"replayed": [asdict(r) for r in replayed], "not_replayed": [asdict(r) for r in failed]},
                         indent=2))
    else:
        for r in outcome:
            print(f"{'replayed' if r.ok else 'NOT replayed':<13} {r.source:<10} {r.what}  {r.events} events  "
                  f"{r.detail}")
        print(f"{len(replayed)} replayed ({sum(r.events for r in replayed)} events), {len(failed)} not replayed")
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
