"""process_stream handler CPU per event at batch 200, next to the in-process compute floor, measured in one run.

    python -m bench.stream_handler [--batches 30] [--batch-size 200] [--users 400] [--feature-set v1]
                                   [--cold] [--breakdown] [--free BatchWriteItem,PutObject,StartExecution]

- floor: base64 + JSON decode, pydantic validation and the streaming features (FeatureState.observe) of every
  event, no I/O; "+ predict" adds XGBoost scoring of the batch (inplace_predict, nthread=1) with the trained
  model, which in the cloud runs in the SageMaker container, not in this Lambda.
- handler: the real process_stream handler (Powertools BatchProcessor, Logger, Metrics) with its DynamoDB and
  Step Functions calls served by a moto server in ANOTHER process, so ``time.process_time`` counts only what the
  Lambda itself spends: our code, boto3 request signing/serialisation and response parsing.
- ``--free OPERATIONS``: the handler's calls of these operations are answered in process with an empty success
  (nothing serialised, signed, sent or parsed): what the handler would cost if they were free, e.g. a design that
  does not write the users' states every batch (``--free BatchWriteItem``). Only the write calls whose answers
  the handler does not read back can be freed; the counters and states it reads stay real.
Both sides process the same records in the same order, warm (a warm-up batch first), one batch each in turn so
that a shared machine's load weighs on both alike. Figures are medians of the per-batch measurements; the ratio is
handler / floor (issue 10's goal: <= 3 at batch 200).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from model.synthetic import make_event, make_users  # noqa: E402
from bench.util import free_port, wait_for_port  # noqa: E402


def records(batch_size: int, batches: int, users: int, seed: int = 7) -> list[dict]:
    """Kinesis event payloads as Lambda builds them, one shard, consecutive sequence numbers."""
    rng = random.Random(seed)
    population = make_users(users, rng)
    clock = time.time() - 3600
    events, out = [], []
    for n in range(batch_size * batches):
        clock += rng.expovariate(2.0)
        events.append(make_event(rng.choice(population), clock, rng, f"bench-{n:07d}"))
    for b in range(batches):
        chunk = events[b * batch_size:(b + 1) * batch_size]
        out.append({"Records": [{
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": e["user_id"],
                        "sequenceNumber": str(10_000 + b * batch_size + i),
                        "data": base64.b64encode(json.dumps(e).encode()).decode(),
                        "approximateArrivalTimestamp": time.time()},
            "eventSource": "aws:kinesis", "eventID": f"shardId-000000000000:{10_000 + b * batch_size + i}",
            "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events"} for i, e in enumerate(chunk)]})
    return out


class Floor:
    """The compute floor, one batch at a time: decode + validate + features (and XGBoost predict, when a booster
    is given) of every record, the users' states kept in memory."""

    def __init__(self, feature_set: str, booster=None):
        from pipeline.features import FeatureState

        self.feature_set, self.booster, self.states = feature_set, booster, {}
        self.new_state = FeatureState

    def run(self, batch: dict) -> tuple[float, float | None]:
        """CPU seconds: decode + validate + features, and the same plus predict (None without a booster)."""
        import numpy as np

        from pipeline.events import validate_event

        started = time.process_time()
        rows = []
        for record in batch["Records"]:
            event, _ = validate_event(json.loads(base64.b64decode(record["kinesis"]["data"])))
            state = self.states.get(event.user_id)
            if state is None:
                state = self.states[event.user_id] = self.new_state(self.feature_set)
            rows.append(state.observe(event).features)
        middle = time.process_time()
        if self.booster is None:
            return middle - started, None
        self.booster.inplace_predict(np.asarray(rows, dtype=np.float32))
        return middle - started, time.process_time() - started


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, f"http://127.0.0.1:{port}"


def deploy_tables(endpoint: str) -> dict[str, str]:
    """The tables, state machine and bucket process_stream uses (schema as in the stack), in the moto server."""
    import boto3

    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    from pipeline import contract

    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    env = {}
    for construct_id in ("EventsTable", "FeaturesTable", "StateTable"):
        table = contract.TABLES[construct_id]
        dynamodb.create_table(**contract.create_table_args(table, construct_id))
        env[table.env] = construct_id
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket="artifacts")
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    env["STATE_MACHINE_ARN"] = session.client("stepfunctions", endpoint_url=endpoint).create_state_machine(
        name="inference", definition=definition, type="EXPRESS",
        roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    env["ARTIFACTS_BUCKET"] = "artifacts"
    return env


class Context:
    function_name = "ProcessStream"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ProcessStream"
    aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 120_000


def handler_runner(endpoint: str, env: dict[str, str], feature_set: str, cold: bool = False):
    """A function that runs the real handler on one batch and returns its CPU seconds. ``cold``: each batch in a
    fresh execution environment as far as kept states go (pipeline/warm.py): every user's state is read."""
    os.environ.update(env, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", FEATURE_SET=feature_set, POWERTOOLS_TRACE_DISABLED="true",
                      POWERTOOLS_METRICS_NAMESPACE="Bench", POWERTOOLS_SERVICE_NAME="bench",
                      POWERTOOLS_LOG_LEVEL="WARNING")
    from process_stream import handler

    from pipeline.warm import WARM

    devnull = open(os.devnull, "w")

    def run(batch: dict) -> float:
        stdout, sys.stdout = sys.stdout, devnull  # the EMF blob of every invocation goes to stdout
        if cold:
            WARM.clear()
        try:
            started = time.process_time()
            response = handler.handler(batch, Context())
            seconds = time.process_time() - started
        finally:
            sys.stdout = stdout
        assert response == {"batchItemFailures": []}, response
        return seconds
    return run


def timed(owner, name: str, totals: dict, label=None) -> None:
    """Replace ``owner.name`` by a wrapper adding its CPU seconds to ``totals[label(args)]`` (default: ``name``)."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            key = label(args) if label else name
            totals[key] = totals.get(key, 0.0) + time.process_time() - started
    setattr(owner, name, wrapper)


# What each operation that ``--free`` may answer returns (the fields the handler reads).
FREE_ANSWERS = {"BatchWriteItem": {"UnprocessedItems": {}}, "PutObject": {},
                "StartExecution": {"executionArn": "arn:aws:states:us-east-1:123456789012:execution:inference:free",
                                   "startDate": 0}}


def answer_in_process(operations: list[str]) -> None:
    """From now on, botocore answers ``operations`` in process (``FREE_ANSWERS``) instead of calling the service."""
    import botocore.client

    unknown = set(operations) - FREE_ANSWERS.keys()
    if unknown:
        raise SystemExit(f"--free: {', '.join(sorted(unknown))} cannot be answered in process "
                         f"(one of {', '.join(FREE_ANSWERS)})")
    real = botocore.client.BaseClient._make_api_call

    def make_api_call(self, operation_name, api_params):
        if operation_name in operations:
            return dict(FREE_ANSWERS[operation_name])
        return real(self, operation_name, api_params)
    botocore.client.BaseClient._make_api_call = make_api_call


def breakdown_parts() -> dict:
    """CPU seconds of each AWS operation (botocore: serialising, signing, HTTP, parsing) and of the users' state
    (de)serialisation, summed from now on."""
    import botocore.client

    from pipeline.features import FeatureState

    totals: dict[str, float] = {}
    timed(botocore.client.BaseClient, "_make_api_call", totals, label=lambda args: args[1])
    timed(FeatureState, "from_bytes", totals, label=lambda args: "FeatureState.from_bytes")
    timed(FeatureState, "to_bytes", totals, label=lambda args: "FeatureState.to_bytes")
    return totals


def load_booster():
    import xgboost

    with tarfile.open(ROOT / "model" / "artifacts" / "model.tar.gz") as archive:
        data = archive.extractfile("xgboost-model").read()
    booster = xgboost.Booster(params={"nthread": 1})
    booster.load_model(bytearray(data))
    return booster


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--feature-set", default="v1")
    parser.add_argument("--cold", action="store_true",
                        help="nothing kept warm between batches (as if each ran in a fresh execution environment)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each AWS call and the state (de)serialisation (wrappers add a little CPU)")
    parser.add_argument("--free", default="", metavar="OPERATIONS",
                        help="comma-separated operations answered in process, as if free: "
                             + ", ".join(FREE_ANSWERS))
    args = parser.parse_args(argv)
    batches = records(args.batch_size, args.batches + 1, args.users)
    booster = load_booster()
    if args.feature_set != json.loads((ROOT / "model" / "artifacts" / "metadata.json").read_text())["feature_set"]:
        booster = None
    floor = Floor(args.feature_set, booster)
    free = [name for name in args.free.split(",") if name]
    if free:
        answer_in_process(free)
    plain, with_predict, handler = [], [], []
    moto, endpoint = start_moto()
    try:
        run_handler = handler_runner(endpoint, deploy_tables(endpoint), args.feature_set, args.cold)
        parts: dict[str, float] = {}
        for number, batch in enumerate(batches):  # interleaved: on a shared machine both sides see the same load
            if number == 1 and args.breakdown:  # after the warm-up batch
                parts = breakdown_parts()
            floor_seconds, predict_seconds = floor.run(batch)
            plain.append(floor_seconds)
            with_predict.append(predict_seconds)
            handler.append(run_handler(batch))
    finally:
        moto.terminate()
    with_predict = with_predict if booster else None
    per_event = lambda values: statistics.median(values[1:]) / args.batch_size * 1e6  # noqa: E731 (skip warm-up)
    result = {"batch_size": args.batch_size, "batches": args.batches, "feature_set": args.feature_set, "free": free,
              "floor_us_per_event": per_event(plain),
              "floor_with_predict_us_per_event": per_event(with_predict) if with_predict else None,
              "handler_cpu_us_per_event": per_event(handler)}
    result["ratio_handler_to_floor"] = result["handler_cpu_us_per_event"] / result["floor_us_per_event"]
    if with_predict:
        result["ratio_handler_to_floor_with_predict"] = (result["handler_cpu_us_per_event"]
                                                         / result["floor_with_predict_us_per_event"])
    print(f"process_stream at batch {args.batch_size} ({args.batches} batches, feature set {args.feature_set}, "
          f"{'no states kept warm' if args.cold else 'states kept warm between batches'}, medians, CPU time)")
    if free:
        print(f"  answered in process, as if free: {', '.join(free)}")
    print(f"  floor: decode + validate + features      {result['floor_us_per_event']:8.1f} µs/event")
    if with_predict:
        print(f"  floor + XGBoost predict                  {result['floor_with_predict_us_per_event']:8.1f} µs/event")
    print(f"  handler (Powertools + DynamoDB + SFN)    {result['handler_cpu_us_per_event']:8.1f} µs/event")
    print(f"  ratio handler / floor                    {result['ratio_handler_to_floor']:8.2f}"
          + (f"   (vs floor + predict: {result['ratio_handler_to_floor_with_predict']:.2f})" if with_predict else ""))
    if parts:
        events = args.batch_size * args.batches
        print(f"  of which (mean over the batches, µs/event; handler mean {sum(handler[1:]) / events * 1e6:.1f}):")
        for name, seconds in sorted(parts.items(), key=lambda item: -item[1]):
            print(f"    {name:36s} {seconds / events * 1e6:8.1f}")
        result["breakdown_us_per_event"] = {name: seconds / events * 1e6 for name, seconds in parts.items()}
    return result


if __name__ == "__main__":
    main()
