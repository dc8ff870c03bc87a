"""End-to-end throughput on the embedded local cloud: events/s sustained for 60 s and ingest-to-prediction latency.

    python -m bench.e2e_throughput [--rates 150 300] [--seconds 60] [--context "-c batchSize=200"]

Each rate is one `make run`-style demo (fresh local cloud, the synthesized cdk.out, the HTTP API in, every
accepted event accounted for) sending ``rate x seconds`` events at ``rate`` events/s. A rate the pipeline
sustains shows throughput ~ rate and a flat p95; above it the backlog grows and so does the latency.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra import synth_inputs  # noqa: E402
from scripts import demo  # noqa: E402


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_rate(rate: float, seconds: float, context: str = "") -> dict:
    out = io.StringIO()
    # CPU of the whole run (deploy, load, drain, the scheduled jobs, the report's scans): this process serves moto,
    # the gateway, the pollers and the executor; the Lambda workers are its children, reaped when the cloud stops
    cloud_cpu, workers_cpu = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
    with contextlib.redirect_stdout(out):
        # the population is sized to the event count (loadgen.population_size), as `make run` does
        code = demo.main(["--events", str(int(rate * seconds)), "--rate", str(rate), "--context", context])
    cloud_cpu, workers_cpu = cpu_seconds(resource.RUSAGE_SELF) - cloud_cpu, \
        cpu_seconds(resource.RUSAGE_CHILDREN) - workers_cpu
    text = out.getvalue()
    latency = re.search(r"p50 / p95 / p99 \(s\)\s+([\d.]+) / ([\d.]+) / ([\d.]+)", text)
    throughput = re.search(r"throughput \(events/s[^)]*\)\s+(\d+)", text)
    sent = re.search(r"sent \d+ in ([\d.]+) s", text)  # the HTTP API took the load at the offered rate, or not
    return {"rate": rate, "exit": code, "throughput": int(throughput.group(1)) if throughput else None,
            "p50": float(latency.group(1)) if latency else None, "p95": float(latency.group(2)) if latency else None,
            "sent_s": float(sent.group(1)) if sent else None, "cloud_cpu": cloud_cpu, "workers_cpu": workers_cpu}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[150.0, 300.0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--context", default=os.environ.get("CDK_CONTEXT", ""),
                        help="the -c overrides cdk.out was synthesized with (default: $CDK_CONTEXT, else none)")
    args = parser.parse_args(argv)
    try:  # refuse a stale or mismatched cdk.out up front, not as a row of zeros
        synth_inputs.check(ROOT / "cdk.out", synth_inputs.parse_context_args(args.context))
    except (synth_inputs.StaleCdkOut, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    results = []
    print(f"end to end on the embedded local cloud, {args.seconds:g} s per rate (goal: 1000 events/s, p95 <= 2 s)")
    print(f"  {'offered/s':>9} {'sent in s':>9} {'sustained/s':>11} {'p50 s':>7} {'p95 s':>7} {'accounted':>9} "
          f"{'CPU s: cloud':>12} {'workers':>7}")
    for rate in args.rates:
        r = run_rate(rate, args.seconds, args.context)
        results.append(r)
        print(f"  {rate:9.0f} {r['sent_s'] or 0:9.1f} {r['throughput'] or 0:11d} {r['p50'] or 0:7.2f} "
              f"{r['p95'] or 0:7.2f} {'yes' if r['exit'] == 0 else 'NO':>9} {r['cloud_cpu']:12.0f} "
              f"{r['workers_cpu']:7.0f}", flush=True)
    return results


if __name__ == "__main__":
    main()
