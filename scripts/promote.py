"""Model versions: upload, promote (new Model + EndpointConfig + UpdateEndpoint), roll back, show.

    python scripts/promote.py --local upload model/artifacts/pytorch/model.tar.gz --version torch-2
    python scripts/promote.py --local promote torch-2 [--variant challenger]
    python scripts/promote.py --local rollback
    python scripts/promote.py --local status
    python scripts/promote.py --local list         # versions: kind, metrics, created time, live on which variant
    python scripts/promote.py --stack RealtimeInference promote xgb-2        (AWS: credentials from the environment)

--local reads the running `make up` local cloud (.localcloud/localcloud.json: its endpoint and the stack outputs
the local cloud resolved from the template); --stack reads the CloudFormation outputs. Both get the same names
(EndpointName, ModelVariants, ArtifactsBucketName, StateTableName). The same model/registry.py code runs in both
cases, and in both endpoint modes: ModelVariants names the endpoint serving each variant (serverless: one endpoint
per variant; instance: one endpoint, the variants are its production variants), so --variant selects the endpoint
to update.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from model import registry  # noqa: E402


def clients(args):
    import boto3

    if args.local:
        state = json.loads((Path(args.state_dir) / "localcloud.json").read_text())
        session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                        region_name="us-east-1")
        make = lambda s: session.client(s, endpoint_url=state["endpoint_url"])  # noqa: E731
        outputs = state.get("outputs") or _local_outputs(state["endpoint_url"])
    else:
        session = boto3.session.Session()
        make = session.client
        stack = make("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return make, outputs, session.region_name


def _local_outputs(endpoint_url: str) -> dict:
    """The stack outputs from the running local cloud itself (a state file written before it recorded them)."""
    import urllib.request

    with urllib.request.urlopen(endpoint_url.rstrip("/") + "/_localcloud/outputs", timeout=30) as response:
        return json.loads(response.read() or b"{}")


def format_versions(rows: list[dict]) -> str:
    """A table: version, kind, feature set, AUC, created, live on."""
    table = [("version", "kind", "set", "holdout AUC", "created (UTC)", "live on")]
    for r in rows:
        auc = r["metrics"].get("holdout_auc")
        table.append((r["version"], r["kind"] or "?", r["feature_set"] or "-", f"{auc:.4f}" if auc else "-",
                      (r["created_at"] or "(deployed by the stack)").replace("+00:00", ""),
                      ", ".join(r["variants"]) or "-"))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="the running local cloud")
    where.add_argument("--stack", help="a deployed CloudFormation stack")
    parser.add_argument("--state-dir", default=str(ROOT / ".localcloud"))
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the endpoint to be InService")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload")
    up.add_argument("artifact", type=Path)
    up.add_argument("--version", required=True)
    pr = sub.add_parser("promote")
    pr.add_argument("version")
    pr.add_argument("--variant", help="A/B variant to switch (default: the first); its endpoint is updated")
    sub.add_parser("rollback")
    sub.add_parser("status")
    listing = sub.add_parser("list", help="registered versions with kind, metrics, created time and which is live")
    listing.add_argument("--json", action="store_true", help="the rows as JSON")
    args = parser.parse_args(argv)
    try:
        make, outputs, region = clients(args)
    except OSError as exc:  # the state file is missing or the local cloud does not answer
        if not args.local:
            raise
        print(f"error: no running local cloud in {args.state_dir} (start one with `make up`): {exc}", file=sys.stderr)
        return 1
    missing = [k for k in ("ArtifactsBucketName", "EndpointName") if not outputs.get(k)]
    if missing:
        print(f"error: the stack has no {' / '.join(missing)} output (outputs: {', '.join(outputs) or 'none'})",
              file=sys.stderr)
        return 1
    sm, s3, ddb = make("sagemaker"), make("s3"), make("dynamodb")
    bucket, endpoint, table = outputs["ArtifactsBucketName"], outputs["EndpointName"], outputs.get("StateTableName")
    variants = json.loads(outputs["ModelVariants"]) if outputs.get("ModelVariants") else None
    try:
        if args.command == "upload":
            result = registry.upload(s3, bucket, args.artifact, args.version)
        elif args.command == "promote":
            result = registry.promote(sm=sm, s3=s3, ddb=ddb, bucket=bucket, endpoint=endpoint, version=args.version,
                                      variant=args.variant, state_table=table, region=region, wait=not args.no_wait,
                                      variants=variants)
        elif args.command == "rollback":
            result = registry.rollback(sm=sm, s3=s3, ddb=ddb, bucket=bucket, endpoint=endpoint, state_table=table,
                                       wait=not args.no_wait, variants=variants)
        elif args.command == "list":
            rows = registry.list_versions(s3, bucket, variants)
            if not args.json:
                print(format_versions(rows))
                return 0
            result = rows
        else:
            result = registry.status(sm, s3, bucket, endpoint, variants)
    except registry.PromotionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
