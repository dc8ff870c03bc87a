"""Plot cost per event against batch size, and the chosen batch size over time, into a PNG.

    python scripts/plot_costs.py --bench [.bench/cost_optimizer.json] [--out reports/costs.png]
    python scripts/plot_costs.py [--url http://127.0.0.1:8000] [--out reports/costs.png]     # the local cloud
    python scripts/plot_costs.py --stack RealtimeInference                                   # AWS (SigV4)

--bench: from the JSON `python -m bench.cost_optimizer` writes: the modelled tunable $ per 1M events by batch
  events (priced by pipeline.costs from the measured stage timings), each fixed (BatchSize, window) of the
  simulated day, and the adaptive optimizer's BatchSize per hourly retrain next to the hindsight oracle's.
otherwise: from a running pipeline's HTTP API (`make up`, LocalStack or AWS; where and how to sign:
  scripts/client.py --target/--url/--stack): the newest cost records (GET /batches/recent?limit=500: $ per event
  against the batch's events) and the optimizer's decisions over time (GET /model/status: optimizer.history).
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.client import ApiClient, ClientError, add_target_arguments, client_from_args  # noqa: E402


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    return plt, figure, left, right


def plot_bench(path: Path, out: Path) -> None:
    data = json.loads(path.read_text())
    plt, figure, left, right = _figure()
    curve = data["tunable_per_event_by_size"]
    sizes = sorted(int(k) for k in curve)
    left.plot(sizes, [curve[str(n)] * 1e6 for n in sizes], color="black", lw=1.5,
              label="modelled: one batch of n events (pipeline.costs, measured stage times)")
    run = data["runs"][0]
    for window, marker in (("0", "o"), ("1", "s")):
        points = sorted((int(k.split("/")[0]), v["tunable_per_event"] * 1e6, v["slo_share"])
                        for k, v in run["fixed"].items() if k.split("/")[1] == window)
        held = [(b, c) for b, c, s in points if s >= 0.99]
        broke = [(b, c) for b, c, s in points if s < 0.99]
        if held:
            left.scatter(*zip(*held), marker=marker, s=18, color="tab:green",
                         label=f"fixed BatchSize, window {window}s, simulated day: SLO held")
        if broke:
            left.scatter(*zip(*broke), marker=marker, s=18, facecolors="none", edgecolors="tab:red",
                         label=f"fixed BatchSize, window {window}s: SLO broken (<99 %)")
    adaptive = run["adaptive"]["tunable_per_event"] * 1e6
    oracle = run["oracle"]["tunable_per_event"] * 1e6
    left.axhline(adaptive, color="tab:blue", ls="--", label=f"adaptive (day 2): {adaptive:.3f}")
    left.axhline(oracle, color="tab:purple", ls=":", label=f"hourly hindsight oracle: {oracle:.3f}")
    left.set(xlabel="batch size (events, or fixed BatchSize)", ylabel="tunable cost, $ per 1M events",
             title="Cost per event against batch size", ylim=(0, max(6.0, oracle * 1.6)))
    left.legend(fontsize=7)
    decisions = run["decisions"]
    hours = [d["t"] / 3600 for d in decisions]
    right.step(hours, [d["batch_size"] for d in decisions], where="post", color="tab:blue",
               label="adaptive BatchSize (hourly retrain)")
    windows = [d["window"] for d in decisions]
    right.scatter([h for h, w in zip(hours, windows) if w == 0],
                  [d["batch_size"] for d, w in zip(decisions, windows) if w == 0], s=10, color="tab:blue",
                  marker="o", label="... with window 0 s (dots) / 1 s (none)")
    oracle_choice = run["oracle_hourly_choice"]
    right.step([24 + h for h in range(24)], [c[0] for c in oracle_choice], where="post", color="tab:purple",
               ls=":", label="oracle BatchSize (day 2)")
    rollbacks = [d for d in decisions if d["status"] == "rollback"]
    if rollbacks:
        right.scatter([d["t"] / 3600 for d in rollbacks], [d["batch_size"] for d in rollbacks], marker="x",
                      color="tab:red", label="rollback")
    right.set(xlabel="simulated hour (day 1 learning, day 2 reported)", ylabel="BatchSize",
              title="Chosen batch size over time", yscale="log")
    right.legend(fontsize=7)
    figure.suptitle(f"bench.cost_optimizer, seed {run['seed']}: {run['events_day']:,.0f} events/day, 2 shards, "
                    f"SLO held by adaptive in {100 * run['adaptive']['slo_share']:.2f}% of batches", fontsize=10)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def plot_live(api: ApiClient, out: Path) -> None:
    batches = api.get_json("/batches/recent", {"limit": 500})["batches"]
    status = api.get_json("/model/status")["optimizer"]
    plt, figure, left, right = _figure()
    if batches:
        left.scatter([b["events"] for b in batches], [b["cost_per_event_usd"] * 1e6 for b in batches], s=10,
                     label="all lines (incl. shard-hours, API, PUT units)")
        left.scatter([b["events"] for b in batches],
                     [b.get("tunable_cost_per_event_usd", b["cost_per_event_usd"]) * 1e6 for b in batches], s=10,
                     label="tunable lines")
    curve = status.get("predicted_curve") or {}
    if curve:
        points = sorted((v["events"], v["cost_per_event"] * 1e6) for v in curve.values())
        left.plot(*zip(*points), color="black", label="optimizer's prediction (last retrain)")
    left.set(xlabel="events in the batch", ylabel="$ per 1M events", title=f"{len(batches)} newest cost records")
    left.legend(fontsize=8)
    history = status.get("history") or []
    if history:
        times = [datetime.fromtimestamp(h["at"], tz=timezone.utc) for h in history]
        right.step(times, [h["batch_size"] for h in history], where="post", label="BatchSize")
        for h, t in zip(history, times):
            if h.get("status") == "rollback":
                right.scatter([t], [h["batch_size"]], marker="x", color="tab:red")
    right.set(xlabel="time (UTC)", ylabel="BatchSize",
              title=f"chosen batch size over time (now {status.get('batch_size')}, {status.get('status')})")
    figure.autofmt_xdate()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", nargs="?", const=str(ROOT / ".bench" / "cost_optimizer.json"),
                        help="plot the bench JSON instead of a running pipeline")
    parser.add_argument("--out", default=str(ROOT / "reports" / "costs.png"))
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.bench:
        if args.url or args.stack:
            parser.error("--bench plots a file: leave out --url/--stack")
        plot_bench(Path(args.bench), out)
    else:
        try:
            plot_live(client_from_args(args), out)
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
