"""Find the batches that were started but never reached predictions (an Express execution that timed out runs no
Catch), and optionally re-drive them (pipeline/reconcile.py, issue 11).

    python scripts/reconcile.py                                   # the running `make up` local cloud
    python scripts/reconcile.py --hours 24 --grace-minutes 10 --redrive
    python scripts/reconcile.py --stack RealtimeInference [--redrive]   (AWS: credentials from the environment)

The local cloud is found through <--state-dir>/localcloud.json (or --endpoint-url) and its outputs through its
control API (/_localcloud/outputs); --stack reads the CloudFormation outputs. Both use ArtifactsBucketName,
PredictionsTableName and StateMachineArn. Quarantined batches show as missing too: they are in the quarantine
queue and are redriven from there (re-driving them here as well counts their events twice in the stats).
Exit status: 0 when nothing is missing (or everything missing was re-driven), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = "localcloud"  # the local cloud's fake pair
NEEDED = {"ARTIFACTS_BUCKET": "ArtifactsBucketName", "PREDICTIONS_TABLE": "PredictionsTableName",
          "STATE_MACHINE_ARN": "StateMachineArn"}


def local_outputs(args: argparse.Namespace) -> tuple[str, dict]:
    """(endpoint URL, stack outputs) of the running local cloud."""
    endpoint = args.endpoint_url
    if not endpoint:
        state = Path(args.state_dir) / "localcloud.json"
        if not state.is_file():
            raise SystemExit(f"error: no running local cloud ({state} is missing): start one with `make up`, or "
                             "pass --endpoint-url or --stack")
        endpoint = json.loads(state.read_text())["endpoint_url"]
    endpoint = endpoint.rstrip("/")
    try:
        with urllib.request.urlopen(endpoint + "/_localcloud/outputs", timeout=10) as response:
            return endpoint, json.loads(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"error: the local cloud at {endpoint} does not answer ({exc}); is `make up` running?")


def stack_outputs(stack: str) -> dict:
    import boto3

    found = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``configure`` reads: a deployed stack, or the running local cloud."""
    where = parser.add_argument_group("where the pipeline is (default: the running local cloud)")
    where.add_argument("--stack", help="a deployed CloudFormation stack (AWS credentials from the environment)")
    where.add_argument("--state-dir", default=str(ROOT / ".localcloud"))
    where.add_argument("--endpoint-url", help="the local cloud's endpoint (instead of its state file)")


def configure(args: argparse.Namespace, needed: dict[str, str] = NEEDED) -> str:
    """Point the pipeline code (pipeline/settings.py, pipeline/aws.py) at the target; a description of it.
    ``needed``: environment variable -> the stack output it is read from."""
    if args.stack:
        outputs, where = stack_outputs(args.stack), f"stack {args.stack}"
    else:
        endpoint, outputs = local_outputs(args)
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=LOCAL_CREDENTIALS,
                          AWS_SECRET_ACCESS_KEY=LOCAL_CREDENTIALS, AWS_DEFAULT_REGION=LOCAL_REGION)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        where = f"local cloud {endpoint}"
    absent = [output for output in needed.values() if not outputs.get(output)]
    if absent:
        raise SystemExit(f"error: {where} has no {', '.join(absent)} output (outputs: {', '.join(outputs) or 'none'})")
    os.environ.update({env: outputs[output] for env, output in needed.items()})
    return where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24, help="journals of the last HOURS (default 24)")
    parser.add_argument("--grace-minutes", type=float, default=10,
                        help="skip journals younger than this (default 10: past the Express 5-minute limit)")
    parser.add_argument("--max-journals", type=int, default=10_000, help="journals examined at most")
    parser.add_argument("--redrive", action="store_true", help="start a new execution for every missing batch")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    target = configure(args)

    from pipeline import reconcile
    from pipeline.settings import settings

    print(f"reconciling {target}: last {args.hours:g} h, grace {args.grace_minutes:g} min"
          f"{', re-driving' if args.redrive else ''}", file=sys.stderr)
    report = reconcile.reconcile(settings(), hours=args.hours, grace_seconds=args.grace_minutes * 60,
                                 max_journals=args.max_journals, redrive=args.redrive,
                                 progress=lambda message: print(message, file=sys.stderr, flush=True))
    summary = report.summary()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        width = max(len(name) for name in summary)
        for name, value in summary.items():
            print(f"{name:<{width}}  {value}")
        if report.missing:
            print("missing batches include any quarantined ones (redriven from the quarantine queue)"
                  + ("" if args.redrive else "; --redrive starts them again"))
    if report.truncated:
        print(f"warning: stopped at --max-journals {args.max_journals}", file=sys.stderr)
    return 0 if not report.missing or len(report.redriven) == len(report.missing) else 1


if __name__ == "__main__":
    raise SystemExit(main())
