"""GET /stats latency against the number of stored predictions: it reads a constant number of items (the
counters, the config, the median sample and two queue depths), so it must stay flat as the tables grow.

    python -m bench.stats_latency [--sizes 10000,100000,1000000] [--calls 20]

moto in this process; predictions are inserted straight into moto's table model (the HTTP path would take minutes
per million), then ``queries.stats`` is called ``--calls`` times per size; the median latency is printed with its
ratio to the smallest size (flat = 1). The previous /stats scanned up to 50,000 prediction items per call.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    import boto3
    from moto import mock_aws
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      STATE_TABLE="state", PREDICTIONS_TABLE="predictions", FEATURES_TABLE="features",
                      FEATURE_SET="v1")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    from pipeline import aws, medians, queries, store
    from pipeline.settings import settings

    aws.client.cache_clear()
    aws.resource.cache_clear()
    results = []
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(TableName="state", BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        dynamodb.create_table(TableName="predictions", BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "event_id", "AttributeType": "S"}])
        store.add_counters("state", "stats", {"events_predicted": 1, "batches": 1})
        store.add_counters("state", "stream#shardId-000000000000", {"events_processed_by_stream": 1,
                                                                   "users_tracked": 1})
        store.put_item("state", medians.SAMPLE_KEY | {"version": 1, "users": json.dumps({
            medians.user_hash(f"u{i}"): {"u": f"u{i}", "m": i / 256, "end": 0} for i in range(256)})})
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables["predictions"]
        stored = 0
        baseline = None
        for size in (int(s) for s in args.sizes.split(",")):
            started = time.perf_counter()
            while stored < size:  # straight into moto's model: the HTTP path would take minutes per million
                table.put_item({"event_id": {"S": f"e{stored:08d}"}, "user_id": {"S": f"u{stored % 20000}"},
                                "ts": {"N": str(1_700_000_000 + stored)}, "score": {"N": "0.5"}})
                stored += 1
            filled = time.perf_counter() - started
            timings = []
            for _ in range(args.calls):
                started = time.perf_counter()
                answer = queries.stats(settings())
                timings.append(time.perf_counter() - started)
            median = statistics.median(timings)
            baseline = baseline or median
            results.append({"predictions": size, "stats_ms": median * 1000, "ratio": median / baseline})
            print(f"{size:>10,} predictions stored (filled in {filled:.0f} s): GET /stats {median * 1000:6.2f} ms "
                  f"median of {args.calls}, {median / baseline:.2f}x the smallest "
                  f"(users_tracked {answer['users_tracked']}, median of medians {answer['median_of_medians']:.3f})",
                  flush=True)
    return results


if __name__ == "__main__":
    main()
