"""Kinesis PutRecords on the local cloud's moto as the stream grows: patched (localcloud.mototools) vs moto's own.

    python -m bench.kinesis_scaling [--records 500000] [--unpatched-records 80000] [--segment 50000]
                                    [--batch 500] [--shards 2] [--retention-seconds S]

Two servers, each a subprocess running the local cloud's gateway (the WSGI server `make up` runs, with its per-service
lock) on an in-process moto: one after ``mototools.configure()`` (the patches), one on moto as installed. This process
is the producer: boto3 PutRecords, ``--batch`` records per call (event JSON of ~230 bytes, partition key = one of
20,000 user ids), into one ``--shards``-shard stream on each server. Calls alternate between the two servers while
both run, so the load of this shared machine falls on both alike; moto's own stops after ``--unpatched-records`` (its
calls get slower with every record, so running it to the end would take tens of minutes).

Per ``--segment`` records and server: records/s as the median over the segment's calls of batch / call time (the
client's own boto3 work is inside it, as in every moto figure in DESIGN.md), the same over the segment's last 20 calls
(the rate reached at its end), the server's CPU per record (its own clock: what the load of this shared machine does
not move) and the growth of its RSS since the stream was created, and the 1-minute load average. Flat means the
patched server's CPU per record in the last segment is <= 1.25x the first. ``--retention-seconds`` caps the patched
server's retention (LOCALCLOUD_KINESIS_RETENTION_HOURS): the records it trims show as a flat RSS.

Last, the fixed cost of a request: server CPU per empty GetRecords (what an idle poller pays 10 times a second per
shard), patched server vs moto as installed; the difference is the request-dispatch caches in mototools.

The server pids are printed at start: ``py-spy record --pid <pid> -o out.svg`` profiles one while the bench runs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.util import wait_for_port  # noqa: E402

STREAM = "bench-events"
WARMUP, WARMUP_CALLS = "bench-warmup", 8
IDLE, IDLE_BLOCKS, IDLE_CALLS = "bench-idle", 5, 100
FLAT_CPU_RATIO = 1.25


def serve(mode: str) -> None:
    """Server subprocess: the gateway on moto (patched or not) until stdin closes; prints its port."""
    from localcloud import mototools
    from localcloud.gateway import Gateway

    mototools.quiet_loggers(None)
    if mode == "patched":
        mototools.configure()
    gateway = Gateway()
    port = gateway.start("127.0.0.1", 0)
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    gateway.stop()


class Server:
    def __init__(self, mode: str, env: dict[str, str]):
        self.mode = mode
        self.process = subprocess.Popen([sys.executable, "-m", "bench.kinesis_scaling", "--serve", mode],
                                        cwd=str(ROOT), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{mode} server did not start: {line!r}")
        self.port = int(line.split()[1])
        wait_for_port(self.port)
        import boto3
        from botocore.config import Config

        self.client = boto3.client("kinesis", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                                   aws_access_key_id="bench", aws_secret_access_key="bench",
                                   config=Config(retries={"max_attempts": 0}, read_timeout=300))
        self.sent = 0
        self.rss_start = self.rss_mb()
        self.call_rates: list[float] = []  # records/s of each call of the current segment
        self.segment_sent, self.segment_cpu = 0, self.cpu_seconds()

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    def cpu_seconds(self) -> float:
        """The server's CPU time (user + system, all threads)."""
        with open(f"/proc/{self.process.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def segment(self) -> dict:
        """Figures of the calls since the last segment, and start a new one."""
        cpu = self.cpu_seconds()
        row = {"median": statistics.median(self.call_rates), "end": statistics.median(self.call_rates[-20:]),
               "cpu_us": (cpu - self.segment_cpu) / (self.sent - self.segment_sent) * 1e6,
               "rss_mb": self.rss_mb() - self.rss_start}
        self.call_rates, self.segment_sent, self.segment_cpu = [], self.sent, cpu
        return row

    def put(self, records: list[dict]) -> None:
        started = time.perf_counter()
        response = self.client.put_records(StreamName=STREAM, Records=records)
        elapsed = time.perf_counter() - started
        if response["FailedRecordCount"]:
            raise RuntimeError(f"{self.mode}: {response['FailedRecordCount']} records failed")
        self.sent += len(records)
        self.call_rates.append(len(records) / elapsed)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def batches(batch: int, count: int = 16, users: int = 20_000, seed: int = 7) -> list[list[dict]]:
    """``count`` distinct PutRecords bodies of pipeline-like events (cycled: the server decodes each call anew)."""
    rng = random.Random(seed)
    types = ["view", "click", "add_to_cart", "purchase", "login", "logout"]
    out = []
    for b in range(count):
        records = []
        for i in range(batch):
            user = f"user-{rng.randrange(users):05d}"
            event = {"event_id": f"{b:04d}-{i:04d}-{rng.getrandbits(64):016x}", "user_id": user,
                     "event_type": rng.choice(types), "timestamp": "2026-11-29T10:00:00Z",
                     "amount": round(rng.random() * 100, 2), "device_type": "mobile", "merchant_category": "books",
                     "priority": "medium"}
            records.append({"Data": json.dumps(event).encode(), "PartitionKey": user})
        out.append(records)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000, help="records put into the patched server")
    parser.add_argument("--unpatched-records", type=int, default=80_000,
                        help="records put into moto as installed (0: skip it)")
    parser.add_argument("--segment", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--retention-seconds", type=float, default=None,
                        help="cap the patched server's retention (default: the stream's 24 h)")
    parser.add_argument("--serve", choices=["patched", "unpatched"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return {}
    if args.segment % args.batch:
        parser.error("--segment must be a multiple of --batch")

    bodies = batches(args.batch)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOCALCLOUD_KINESIS_RETENTION_HOURS", None)
    patched_env = dict(env)
    if args.retention_seconds:
        patched_env["LOCALCLOUD_KINESIS_RETENTION_HOURS"] = str(args.retention_seconds / 3600)
    servers: dict[str, Server] = {}
    try:
        servers["patched"] = Server("patched", patched_env)
        if args.unpatched_records:
            servers["unpatched"] = Server("unpatched", env)
        for server in servers.values():
            server.client.create_stream(StreamName=STREAM, ShardCount=args.shards)
            server.client.create_stream(StreamName=WARMUP, ShardCount=1)
            for body in bodies[:WARMUP_CALLS]:  # first calls of a fresh server are slower (imports, caches)
                server.client.put_records(StreamName=WARMUP, Records=body)
            server.client.delete_stream(StreamName=WARMUP)
            server.rss_start, server.segment_cpu = server.rss_mb(), server.cpu_seconds()
        retention = f"{args.retention_seconds:g} s (cap)" if args.retention_seconds else "24 h (stream default)"
        print(f"Kinesis PutRecords on the local cloud's moto: {args.batch} records per call, {args.shards} shards, "
              f"retention {retention}")
        print("  servers: " + ", ".join(f"{s.mode} pid {s.process.pid}" for s in servers.values())
              + "  (py-spy record --pid <pid>)")
        print("  rec/s = median over the segment's calls of batch / call time; end = the same over its last 20 calls;")
        stop = (f"moto's own stops at {args.unpatched_records:,} records" if args.unpatched_records
                else "moto's own skipped")
        print(f"  CPU = server CPU µs per record; +RSS = server memory growth; {stop}")
        print(f"  {'records':>9} | {'patched':^32} | {'moto as installed':^32} | {'patched / moto':^14} |")
        print(f"  {'':>9} | {'rec/s':>7} {'end':>7} {'CPU µs':>7} {'+RSS MB':>8} | {'rec/s':>7} {'end':>7} "
              f"{'CPU µs':>7} {'+RSS MB':>8} | {'rec/s':>6} {'CPU':>7} | load", flush=True)
        limits = {"patched": args.records, "unpatched": args.unpatched_records}
        rows = []
        call = 0
        started = time.perf_counter()
        while servers["patched"].sent < args.records:
            active = [s for s in servers.values() if s.sent < limits[s.mode]]
            for server in active:
                server.put(bodies[call % len(bodies)])
            call += 1
            ends = [s for s in active if s.sent >= limits[s.mode]]
            if servers["patched"].sent % args.segment and not ends:
                continue
            row = {"records": servers["patched"].sent}
            for server in active:
                row[server.mode] = server.segment()
            rows.append(row)
            print(_row(row) + f" | {os.getloadavg()[0]:4.1f}   ({time.perf_counter() - started:.0f} s)", flush=True)
        idle = idle_polls(servers) if "unpatched" in servers else None
    finally:
        for server in servers.values():
            server.stop()

    first, last = rows[0]["patched"], rows[-1]["patched"]
    cpu_ratio, rate_ratio = last["cpu_us"] / first["cpu_us"], last["median"] / first["median"]
    print(f"patched, last segment / first: server CPU per record x{cpu_ratio:.2f} "
          f"({'flat' if cpu_ratio <= FLAT_CPU_RATIO else 'NOT flat'}: goal <= x{FLAT_CPU_RATIO}); "
          f"rec/s x{rate_ratio:.2f} (wall clock: moves with the load of the machine, see the load column)")
    moto_rows = [r for r in rows if "unpatched" in r]
    if moto_rows:
        u_first, u_last = moto_rows[0]["unpatched"], moto_rows[-1]["unpatched"]
        p_at = moto_rows[-1]["patched"]
        print(f"moto as installed at {moto_rows[-1]['records']:,} records: rec/s (end) "
              f"x{u_last['end'] / u_first['end']:.2f} of its first segment's end; patched is "
              f"{p_at['end'] / u_last['end']:.1f}x faster there ({p_at['end']:,.0f} vs {u_last['end']:,.0f} rec/s)")
    if idle:
        print(f"empty GetRecords (an idle poller's call; per-request cost, any service): server CPU "
              f"{idle['patched']:.2f} ms/call patched vs {idle['unpatched']:.2f} ms moto as installed "
              f"(x{idle['unpatched'] / idle['patched']:.1f}; median of {IDLE_BLOCKS} blocks of {IDLE_CALLS} calls)")
    return {"rows": rows, "cpu_ratio": cpu_ratio, "rate_ratio": rate_ratio, "idle_get_records_ms": idle}


def idle_polls(servers: dict[str, Server]) -> dict[str, float]:
    """Server CPU per empty GetRecords (a LATEST iterator on an empty stream), blocks interleaved across servers."""
    iterators, per_call = {}, {mode: [] for mode in servers}
    for mode, server in servers.items():
        server.client.create_stream(StreamName=IDLE, ShardCount=1)
        shard = server.client.list_shards(StreamName=IDLE)["Shards"][0]["ShardId"]
        iterators[mode] = server.client.get_shard_iterator(StreamName=IDLE, ShardId=shard,
                                                           ShardIteratorType="LATEST")["ShardIterator"]
    for _ in range(IDLE_BLOCKS):
        for mode, server in servers.items():
            cpu = server.cpu_seconds()
            for _ in range(IDLE_CALLS):
                iterators[mode] = server.client.get_records(ShardIterator=iterators[mode])["NextShardIterator"]
            per_call[mode].append((server.cpu_seconds() - cpu) / IDLE_CALLS * 1e3)
    return {mode: statistics.median(values) for mode, values in per_call.items()}


def _row(row: dict) -> str:
    cells = []
    for mode in ("patched", "unpatched"):
        r = row.get(mode)
        cells.append(f"{r['median']:7,.0f} {r['end']:7,.0f} {r['cpu_us']:7,.0f} {r['rss_mb']:8,.0f}" if r else
                     f"{'-':>7} {'-':>7} {'-':>7} {'-':>8}")
    p, u = row.get("patched"), row.get("unpatched")
    ratio = f"{p['median'] / u['median']:6.1f} {u['cpu_us'] / p['cpu_us']:7.1f}" if p and u else f"{'-':>6} {'-':>7}"
    return f"  {row['records']:9,} | {cells[0]} | {cells[1]} | {ratio}"


if __name__ == "__main__":
    main()
