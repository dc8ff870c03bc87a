"""Command line: ``python -m localcloud up`` and helpers that talk to a running instance.

    python -m localcloud up [--cdk-out cdk.out] [--api-port 8000] [--gateway-port 0] [--state-dir .localcloud]
                            [--require-sigv4]
                            [--kinesis-retention-hours H] [--iam enforce|report|off]
    python -m localcloud run-schedule <rule>     # rule logical id, name, prefix, or its target function
    python -m localcloud status [--details]      # one-screen summary; --details: everything, as JSON
    python -m localcloud fault NAME [--count N] [--table T] [--function F] [--key-prefix P] [--seconds S]
    python -m localcloud fault --error ThrottlingException --count 2 [--endpoint NAME]   # = sagemaker-error
    python -m localcloud clear-faults

The helpers find the running instance through <state-dir>/localcloud.json (or --endpoint-url).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path


def _up(args: argparse.Namespace) -> int:
    from .cloud import LocalCloud
    from .errors import LocalCloudError

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    if args.kinesis_retention_hours:
        os.environ["LOCALCLOUD_KINESIS_RETENTION_HOURS"] = str(args.kinesis_retention_hours)
    problem = _stale_cdk_out(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        cloud = LocalCloud(cdk_out=args.cdk_out, state_dir=args.state_dir, gateway_port=args.gateway_port,
                           api_port=args.api_port, workers_per_function=args.workers,
                           run_schedules=not args.no_schedules, time_scale=args.time_scale, prewarm=args.prewarm,
                           stack=args.stack, require_sigv4=args.require_sigv4, iam=args.iam)
        cloud.start()
    except LocalCloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        cloud.deploy()
        print(f"local cloud up in {time.perf_counter() - started:.1f} s (stack {cloud.stack.stack_name})")
        print(f"  HTTP API      {cloud.api_url}")
        if cloud.require_sigv4:
            auth = cloud.api_auth()
            print(f"                SigV4 required on AWS_IAM routes: sign for service execute-api, region "
                  f"{auth['region']}, access key {auth['access_key_id']!r} / secret {auth['secret_access_key']!r} "
                  "(the scripts do: --sign)")
        print(f"  dashboard     {cloud.dashboard_url}   (live; the stack's CloudWatch dashboard + stat cards)")
        print(f"  AWS endpoint  {cloud.endpoint_url}   (AWS_ENDPOINT_URL for boto3 / the AWS CLI; any credentials)")
        print(f"  logs          {cloud.log_dir}")
        if cloud.outputs:
            print("outputs:")
            for key, value in cloud.outputs.items():
                print(f"  {key:<28} {value}")
        print("resources:")
        for resource in cloud.deployer.resources.values():
            if resource.status == "created":
                print(f"  {resource.logical_id:<48} {resource.type:<34} {resource.ref}")
        if cloud.scheduler.rules:
            print("schedules (python -m localcloud run-schedule <rule>):")
            for rule in cloud.scheduler.rules:
                print(f"  {rule.logical_id:<48} {rule.schedule}")
        print("Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except LocalCloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        cloud.stop()
    return 0


def _stale_cdk_out(args: argparse.Namespace) -> str | None:
    """Why cdk.out must not be deployed (this project's synth record, infra/synth_inputs.py), or None. A cdk.out
    without the record (another CDK app) is deployed as it is."""
    from infra import synth_inputs

    if not (Path(args.cdk_out) / synth_inputs.RECORD).is_file():
        return None
    try:
        wanted = None if args.context is None else synth_inputs.parse_context_args(args.context)
        synth_inputs.check(args.cdk_out, wanted)
    except (synth_inputs.StaleCdkOut, ValueError) as exc:
        return str(exc)
    return None


def _endpoint(args: argparse.Namespace) -> str:
    if args.endpoint_url:
        return args.endpoint_url.rstrip("/")
    state = Path(args.state_dir) / "localcloud.json"
    if not state.is_file():
        raise SystemExit(f"no running local cloud found ({state} is missing): start one with "
                         "`python -m localcloud up` or pass --endpoint-url")
    return json.loads(state.read_text())["endpoint_url"]


def _call(args: argparse.Namespace, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    url = _endpoint(args) + "/_localcloud/" + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach the local cloud at {url}: {exc.reason}") from None


def _print(status: int, body: dict) -> int:
    print(json.dumps(body, indent=2, default=str))
    return 0 if status < 400 else 1


def _short(logical_id: str) -> str:
    """A CDK logical id without its 8-hex-digit hash suffix (ApiFunctionCE271BD4 -> ApiFunction)."""
    return re.sub(r"(?<=[a-z])[0-9A-F]{8}$", "", logical_id)


def summary(status: dict) -> str:
    """One screen: where things are, what is deployed, what ran and what failed (``--details`` has the rest)."""
    lines = [f"stack       {status.get('stack')}   "
             f"{'deployed' if status.get('deployed') else 'started, deploying' if status.get('started') else 'stopped'}"
             + (f" in {status['deploy_seconds']:.1f} s" if status.get("deploy_seconds") else "")]
    if status.get("api_url"):
        sigv4 = (status.get("api_auth") or {}).get("require_sigv4")
        lines += [f"HTTP API    {status['api_url']}   (SigV4 {'required' if sigv4 else 'not required'})",
                  f"AWS         {status['endpoint_url']}   logs {status.get('log_dir')}"]
    functions = status.get("functions") or {}
    if functions:
        lines += textwrap.wrap(f"functions   {len(functions)}, invocations: " + ", ".join(
            f"{_short(lid).removesuffix('Function')} {f['invocations']}"
            + (f" ({f['errors']} errors)" if f["errors"] else "") for lid, f in sorted(functions.items())),
            width=110, subsequent_indent=" " * 12)
    pollers = status.get("pollers") or []
    if pollers:
        failed = sum(p["records_failed"] for p in pollers)
        errors = [p["last_error"] for p in pollers if p.get("last_error")]
        lines.append(f"stream      {len(pollers)} shards: {sum(p['batches'] for p in pollers)} batches, "
                     f"{sum(p['records_delivered'] for p in pollers)} records delivered, {failed} failed, "
                     f"{sum(p['buffered'] for p in pollers)} buffered"
                     + (f"; last error: {errors[-1]}" if errors else ""))
    for name, endpoint in (status.get("endpoints") or {}).items():
        variants = ", ".join(f"{v['name']} {v.get('kind') or '?'} w={v['weight']:g} {v['invocations']} calls"
                             + (f" ERROR {v['error']}" if v.get("error") else "") for v in endpoint["variants"])
        lines.append(f"endpoint    {name}: {variants}")
    if status.get("model_faults"):
        lines.append("faults      " + ", ".join(f"{f['error']} x{f['remaining']} on {f['endpoint']}"
                                                for f in status["model_faults"]))
    schedules = status.get("schedules") or {}
    if schedules:
        lines += textwrap.wrap("schedules   " + ", ".join(f"{_short(lid)} {s['expression']} fired {s['fired']}"
                                                          for lid, s in schedules.items()),
                               width=110, subsequent_indent=" " * 12)
    lines.append(f"resources   {len(status.get('resources') or {})} deployed, {len(status.get('skipped') or [])} "
                 f"skipped; {len(status.get('outputs') or {})} outputs   (--details for everything, as JSON)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return _up(args)
    if args.command == "run-schedule":
        return _print(*_call(args, "POST", f"schedules/{args.rule}/run"))
    if args.command == "status":
        status, body = _call(args, "GET", "status")
        if args.details or status >= 400:
            return _print(status, body)
        print(summary(body))
        return 0
    if args.command == "fault":
        if args.name == "sagemaker-error":
            return _print(*_call(args, "POST", "sagemaker/faults", {
                "error": args.error or "ThrottlingException", "count": args.count, "endpoint": args.endpoint or "*"}))
        params = {k: getattr(args, k) for k in ("table", "function", "key_prefix", "operation", "seconds")
                  if getattr(args, k) is not None}
        return _print(*_call(args, "POST", "faults", {"name": args.name, "count": args.count, **params}))
    if args.command == "clear-faults":
        return _print(*_call(args, "DELETE", "faults"))
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localcloud", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_up(sub)
    helps = {"run-schedule": "fire a schedule now", "status": "what runs and what ran (one screen; --details)",
             "fault": "make the next SageMaker invocations fail", "clear-faults": "remove the injected faults"}
    for name in ("run-schedule", "status", "fault", "clear-faults"):
        command = sub.add_parser(name, help=helps[name])
        command.add_argument("--endpoint-url", default=None)
        command.add_argument("--timeout", type=float, default=900)
        if name == "run-schedule":
            command.add_argument("rule")
        if name == "status":
            command.add_argument("--details", action="store_true", help="the whole status as JSON")
        if name == "fault":
            _add_fault_arguments(command)
    for command in sub.choices.values():
        command.add_argument("--state-dir", default=".localcloud")
    return parser


def _add_up(sub) -> None:
    up = sub.add_parser("up", help="start, deploy cdk.out and serve until Ctrl-C")
    up.add_argument("--cdk-out", default="cdk.out")
    up.add_argument("--stack", default=None)
    up.add_argument("--api-port", type=int, default=8000)
    up.add_argument("--gateway-port", type=int, default=0)
    up.add_argument("--workers", type=int, default=2, help="worker processes per function")
    up.add_argument("--time-scale", type=float, default=1.0, help="schedule clock speed-up")
    up.add_argument("--no-schedules", action="store_true", help="do not fire schedules (run-schedule still works)")
    up.add_argument("--prewarm", action="store_true", help="start one worker per function at deploy")
    up.add_argument("--require-sigv4", action="store_true",
                    help="verify SigV4 on the HTTP API's AWS_IAM routes as API Gateway does (403 when missing or "
                         "invalid); sign with the local credentials localcloud/localcloud")
    up.add_argument("--context", default=None, metavar='"-c KEY=VALUE ..."',
                    help="the CDK context overrides cdk.out must have been synthesized with (`make up "
                         "CDK_CONTEXT=...` passes its own); default: any. A cdk.out older than its inputs is refused")
    up.add_argument("--kinesis-retention-hours", type=float, default=None,
                    help="trim stream records older than this even where RetentionPeriodHours is longer (memory: "
                         "~0.8 KB per record held; at 300 events/s, 24 h is ~20 GB). Default: the stream's retention")
    up.add_argument("--iam", choices=("enforce", "report", "off"), default=None,
                    help="check every AWS call of a function against its role's policies: enforce (AccessDenied, the "
                         "default, or LOCALCLOUD_IAM), report (log would-be denials) or off")


def _add_fault_arguments(command: argparse.ArgumentParser) -> None:
    from .faults import KINDS, catalogue

    command.description = "Arm a fault for the next --count calls it matches (localcloud/faults.py)."
    command.epilog = "faults:\n" + catalogue()
    command.formatter_class = argparse.RawDescriptionHelpFormatter
    command.add_argument("name", nargs="?", default="sagemaker-error", choices=list(KINDS),
                         metavar="NAME", help="a fault name (below); default sagemaker-error")
    command.add_argument("--count", type=int, default=1, help="matching calls to hit (default 1)")
    command.add_argument("--error", default=None, help="sagemaker-error: the error code "
                         "(default ThrottlingException)")
    command.add_argument("--endpoint", default=None, help="sagemaker-error: one endpoint (default all)")
    command.add_argument("--table", default=None, help="only calls naming a table that contains this")
    command.add_argument("--function", default=None,
                         help="only calls made by this function (logical id prefix, e.g. ProcessStream)")
    command.add_argument("--key-prefix", default=None, help="only items (pk) or S3 keys with this prefix")
    command.add_argument("--operation", default=None, help="only this operation (e.g. GetObject)")
    command.add_argument("--seconds", type=float, default=None, help="sagemaker-timeout, stream-timeout: "
                         "how long the call is held")


if __name__ == "__main__":
    raise SystemExit(main())
