"""GetMetricData in the local cloud: moto as installed vs localcloud.metrics.patch_cloudwatch, on what one dashboard
refresh asks (35 metric-stat queries, a 10 s period over 10 minutes) of 10k stored values, in process (no HTTP).

    python -m bench.cloudwatch_query [--datums 10000] [--queries 35] [--repeat 3]
"""
import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datums", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=35)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import boto3
    from moto import mock_aws
    from moto.cloudwatch.models import cloudwatch_backends

    from localcloud import mototools
    from localcloud.metrics import ORIGINALS

    mototools.configure()
    rng = random.Random(3)
    names = [f"M{i}" for i in range(12)]
    dims = [{"Name": "service", "Value": "s"}]
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        data = [{"MetricName": rng.choice(names), "Dimensions": dims, "Value": rng.random(),
                 "Timestamp": now - timedelta(seconds=rng.uniform(0, 600))} for _ in range(args.datums)]
        for start in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace="NS", MetricData=data[start:start + 1000])
        backend = cloudwatch_backends[mototools.ACCOUNT_ID]["us-east-1"]
        queries = [{"Id": f"q{i}", "MetricStat": {"Metric": {"Namespace": "NS", "MetricName": names[i % 12],
                                                             "Dimensions": dims}, "Period": 10, "Stat": "Average"}}
                   for i in range(args.queries)]
        start, end = (now - timedelta(seconds=600)).replace(tzinfo=None), now.replace(tzinfo=None)
        timings = {}
        for label, call in (("moto as installed", ORIGINALS["get_metric_data"]),
                            ("patched", type(backend).get_metric_data)):
            runs = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = call(backend, queries, start, end)
                runs.append(time.perf_counter() - started)
            timings[label] = statistics.median(runs)
            print(f"{label:<18} {timings[label]:8.3f} s median of {args.repeat} "
                  f"({args.queries} queries, {args.datums} values, {sum(len(r['values']) for r in result)} points)")
        print(f"patched / moto: x{timings['moto as installed'] / timings['patched']:.0f} faster")


if __name__ == "__main__":
    main()
