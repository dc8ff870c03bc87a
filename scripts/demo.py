"""`make run`: start the embedded local cloud, deploy the synthesized stack into it, drive a workload through
the HTTP API end to end and print a report. Exits 0 only when every accepted event is accounted for.

    python scripts/demo.py [--events 6000] [--rate 600] [--users N] [--history-hours 24] [--seed 7] [--cdk-out cdk.out]
                           [--sigv4] [--context "-c batchSize=200 ..."]

--context: the -c overrides cdk.out must have been synthesized with (`make run CDK_CONTEXT="..."` passes its own);
a cdk.out synthesized with other overrides, or older than cdk.json, the sources or the model artifacts, is refused
(infra/synth_inputs.py) instead of silently run.

--sigv4: the local cloud requires and verifies SigV4 on the HTTP API (as API Gateway does with IAM auth) and the
workload is signed by the scripts' client (scripts/client.py), the same code that signs for a deployed stack.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from infra import synth_inputs  # noqa: E402
from localcloud import LocalCloud  # noqa: E402
from scripts import loadgen  # noqa: E402
from scripts.client import local_client  # noqa: E402
from scripts.progress import progress  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Pipeline:
    """Read access to the deployed resources, with names taken from the deployed function's environment."""

    def __init__(self, cloud: LocalCloud):
        session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                        region_name="us-east-1")
        self.client = lambda service: session.client(service, endpoint_url=cloud.endpoint_url)
        lambda_ = self.client("lambda")
        functions = lambda_.list_functions()["Functions"]
        # moto's state is per process: another local cloud in it (tests run several) lists its functions too
        stack = getattr(cloud, "stack", None)
        prefix = f"{stack.stack_name}-" if stack is not None else ""
        api = next(f for f in functions if f["FunctionName"].startswith(prefix) and "ApiFunction" in f["FunctionName"])
        self.env = api["Environment"]["Variables"]
        self.dynamodb = session.resource("dynamodb", endpoint_url=cloud.endpoint_url)
        self.sqs = self.client("sqs")
        self.s3 = self.client("s3")
        self._bodies: dict[str, dict[str, dict]] = {}   # queue env name -> message id -> body
        self._batch_ids: dict[str, set[str]] = {}       # quarantined batch state -> its event ids

    def scan(self, table: str, **kwargs) -> list[dict]:
        items, table_ = [], self.dynamodb.Table(self.env[table])
        while True:
            response = table_.scan(**kwargs)
            items += response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def count(self, table: str) -> int:
        total, kwargs, table_ = 0, {"Select": "COUNT"}, self.dynamodb.Table(self.env[table])
        while True:
            response = table_.scan(**kwargs)
            total += response["Count"]
            if "LastEvaluatedKey" not in response:
                return total
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def counter(self, name: str) -> int:
        item = self.dynamodb.Table(self.env["STATE_TABLE"]).get_item(Key={"pk": "stats"}).get("Item") or {}
        return int(item.get(name, 0))

    def queue_messages(self, env_name: str) -> list[dict]:
        """Every message body of a queue, each once (see read_queue); parsed bodies are cached by message id."""
        cache = self._bodies.setdefault(env_name, {})
        url = self.env[env_name]
        if queue_depth(self.sqs, url) != len(cache):  # same depth, same messages (the demo deletes none; a redrive
            messages = read_queue(self.sqs, url)      # deletes what it replayed: the depth changes)
            self._bodies[env_name] = cache = {m["MessageId"]: cache.get(m["MessageId"]) or json.loads(m["Body"])
                                              for m in messages}
        return list(cache.values())

    def quarantined_event_ids(self) -> set[str]:
        """The events of the quarantined batches: each message is a failed batch's state (rows inline or in the
        batch journal on S3 when InvokeModel failed; predictions inline or on S3 when StorePredictions failed)."""
        cache, found = self._batch_ids, set()
        for body in self.queue_messages("QUARANTINE_QUEUE_URL"):
            key = json.dumps(body, sort_keys=True)
            if key not in cache:
                cache[key] = batch_event_ids(body, self.s3)
            found |= cache[key]
        return found

    def dlq_records(self) -> int:
        """Records in the stream DLQ: each message is a Lambda on-failure record describing a shard's sequence
        range (KinesisBatchInfo), not the records themselves."""
        return sum(b.get("KinesisBatchInfo", {}).get("batchSize", 0) for b in self.queue_messages("STREAM_DLQ_URL"))

    def dlq_event_ids(self) -> set[str]:
        """The event ids of the records the stream DLQ's messages name, read back from the stream (each message
        is a shard's sequence range; the stream keeps the records for its retention period)."""
        kinesis, ids = self.client("kinesis"), set()
        for body in self.queue_messages("STREAM_DLQ_URL"):
            info = body["KinesisBatchInfo"]
            iterator = kinesis.get_shard_iterator(
                StreamName=info["streamArn"].split("/", 1)[1], ShardId=info["shardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=info["startSequenceNumber"])
            iterator, left = iterator["ShardIterator"], int(info["batchSize"])
            while iterator and left > 0:
                records = kinesis.get_records(ShardIterator=iterator, Limit=left)
                if not records["Records"]:
                    break
                for record in records["Records"]:
                    if int(record["SequenceNumber"]) <= int(info["endSequenceNumber"]):
                        ids.add(_event_id(record["Data"]))
                left -= len(records["Records"])
                iterator = records.get("NextShardIterator")
        return ids


def _event_id(data: bytes) -> str | None:
    try:
        return json.loads(data).get("event_id")
    except (ValueError, AttributeError):
        return None


@dataclass
class Accounting:
    """Where every accepted event is: stored prediction, quarantined batch or stream DLQ. ``unaccounted`` must be
    0 and no event may be in two places (``overlap``). ``double_counted``: the predictions counter above the
    predictions stored, i.e. events scored twice; a client retry past the dedupe horizon (README "Exactly-once
    effect") is scored again by design, so `make run` (whose load resends old events) reports it and the fault
    matrix (whose load stays within the horizon) requires 0."""
    expected: int                 # unique accepted event ids
    predicted: set[str]
    quarantined: set[str]
    dlq: set[str]
    stream_rejected: int          # records rejected in the stream (not accepted events: the API validates first)
    double_counted: int           # GET /stats events_predicted minus the predictions stored (every run, all events)

    @property
    def overlap(self) -> set[str]:
        return (self.predicted & self.quarantined) | (self.predicted & self.dlq) | (self.quarantined & self.dlq)

    @property
    def unaccounted(self) -> int:
        return self.expected - len(self.predicted | self.quarantined | self.dlq)

    @property
    def ok(self) -> bool:
        return self.unaccounted == 0 and not self.overlap


def account(pipeline: Pipeline, accepted_ids: set[str], predictions: list[dict] | None = None) -> Accounting:
    """The accounting of `make run` (and of the fault matrix, tests/e2e/test_fault_matrix.py) for the events
    accepted with ``accepted_ids``."""
    predictions = pipeline.scan("PREDICTIONS_TABLE") if predictions is None else predictions
    return Accounting(
        expected=len(accepted_ids),
        predicted={p["event_id"] for p in predictions} & accepted_ids,
        quarantined=pipeline.quarantined_event_ids() & accepted_ids,
        dlq=pipeline.dlq_event_ids() & accepted_ids,
        stream_rejected=sum(1 for i in pipeline.scan("EVENTS_TABLE") if i.get("status") == "rejected"),
        double_counted=pipeline.counter("events_predicted") - len(predictions))


def queue_depth(sqs, url: str) -> int:
    """Messages in a queue, visible or not (as functions/pipeline/queries.py counts them)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def read_queue(sqs, url: str, hold_seconds: int = 120) -> list[dict]:
    """Every message of a queue, each once, left in the queue. Receives pages of 10, holding each received message
    invisible for hold_seconds so the next receive shows others (a visibility timeout of 0 shows the same 10 again
    and again), until a receive returns nothing; then makes them visible again. Messages another consumer holds
    at the time are not seen (the demo has none)."""
    messages: dict[str, dict] = {}
    handles: list[str] = []
    try:
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=hold_seconds,
                                        WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                break
            for message in batch:
                handles.append(message["ReceiptHandle"])
                messages.setdefault(message["MessageId"], message)
    finally:
        for start in range(0, len(handles), 10):
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(handles[start:start + 10])])
    return list(messages.values())


def batch_event_ids(state: dict, s3) -> set[str]:
    """The event ids of a quarantined batch, from its state (functions/pipeline/inference.py load_rows and
    load_predictions: rows or predictions inline, or an S3 object holding them)."""
    def read(uri: str):
        parsed = urlparse(uri)
        return json.loads(s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read())

    if state.get("rows_s3_uri"):
        body = read(state["rows_s3_uri"])
        rows = body["rows"] if isinstance(body, dict) else body
    elif state.get("predictions_s3_uri"):
        rows = read(state["predictions_s3_uri"])
    else:
        rows = state.get("rows") or state.get("predictions") or []
    return {r["event_id"] for r in rows}


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=600.0, help="events per second sent to the API")
    parser.add_argument("--users", type=int, help="default: as many as send --events in --history-hours")
    parser.add_argument("--history-hours", type=float, default=24.0,
                        help="hours of event time the load replays (see scripts/loadgen.py)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cdk-out", default=str(ROOT / "cdk.out"))
    parser.add_argument("--api-port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--sigv4", action="store_true",
                        help="require SigV4 on the HTTP API and sign the workload (scripts/client.py)")
    parser.add_argument("--context", default="", metavar='"-c KEY=VALUE ..."',
                        help="the CDK context overrides cdk.out must have been synthesized with (default: none)")
    args = parser.parse_args(argv)
    try:
        synth_inputs.check(args.cdk_out, synth_inputs.parse_context_args(args.context))
    except (synth_inputs.StaleCdkOut, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    log(f"starting the embedded local cloud from {args.cdk_out} ...")
    with LocalCloud(cdk_out=args.cdk_out, state_dir=str(ROOT / ".localcloud"), api_port=args.api_port,
                    require_sigv4=args.sigv4) as cloud:
        started = time.perf_counter()
        cloud.deploy()
        log(f"deployed in {time.perf_counter() - started:.1f} s; API {cloud.api_url}, AWS endpoint "
            f"{cloud.endpoint_url} (function logs in .localcloud/logs/)")
        pipeline = Pipeline(cloud)
        auth = cloud.api_auth()
        api = local_client(cloud.api_url, sign=args.sigv4, access_key=auth["access_key_id"],
                           secret_key=auth["secret_access_key"], region=auth["region"])

        users = loadgen.population_size(args.events, args.users, args.history_hours)
        log(f"sending {args.events} events at {args.rate:g}/s from {users} users, replaying {args.history_hours:g} h "
            "of event time (2% invalid, 2% duplicates) ...")
        log(f"  to {api}")
        with progress("events sent", args.events) as advance:
            load = loadgen.run(api, args.events, args.rate, users=users, seed=args.seed,
                               history_hours=args.history_hours,
                               progress=lambda done, n: (advance(completed=done),
                                                         done % 1000 == 0 and log(f"  sent {done}/{n}")))
        log(f"sent {load.sent} in {load.seconds:.1f} s: accepted {load.accepted}, rejected {load.rejected}, "
            f"failed {load.failed}" + (f" (first error: {load.request_errors[0]})" if load.request_errors else ""))

        log("waiting for the pipeline to drain ...")
        expected = load.unique_accepted
        deadline = time.monotonic() + args.drain_timeout
        last, last_change = -1, time.monotonic()
        with progress("events settled", expected) as advance:
            while time.monotonic() < deadline:
                # Progress from the pipeline's own counters (one GetItem): scanning the tables every second would
                # load the local cloud more than the workload does. A full count confirms before we stop.
                done = pipeline.counter("events_predicted")
                if done >= expected:
                    done = pipeline.count("PREDICTIONS_TABLE")
                settled = done + len(pipeline.quarantined_event_ids()) + pipeline.dlq_records()
                if settled != last:
                    advance(completed=settled)
                    log(f"  {done} predicted, {settled}/{expected} settled")
                    last, last_change = settled, time.monotonic()
                if settled >= expected:
                    break
                if time.monotonic() - last_change > 30:
                    log("  no progress for 30 s; reporting what is there")
                    break
                time.sleep(1.0)

        log("running the scheduled jobs once (retrain batch size, drift) ...")
        optimizer = cloud.run_schedule("RetrainBatchSize")
        drift = cloud.run_schedule("MonitorDrift")

        predictions = pipeline.scan("PREDICTIONS_TABLE")
        accounting = account(pipeline, load.accepted_ids, predictions)
        latencies = sorted(float(p["predicted_at"]) - float(p["ingest_ts"]) for p in predictions)
        first_ingest = min(float(p["ingest_ts"]) for p in predictions) if predictions else 0
        last_prediction = max(float(p["predicted_at"]) for p in predictions) if predictions else 0
        costs = pipeline.scan("COST_TABLE")
        cost_total = sum(float(c["cost_usd"]["total"]) for c in costs)
        cost_events = sum(int(c["events"]) for c in costs)

    lines = [
        ("events sent", load.sent),
        ("  invalid (sent on purpose)", load.bad_sent),
        ("  duplicates (sent on purpose)", load.duplicates_sent),
        ("accepted by the API", load.accepted),
        ("  unique event ids", expected),
        ("rejected by the API (with reasons)", load.rejected),
        ("failed to deliver", load.failed),
        ("rejected in the stream", accounting.stream_rejected),
        ("processed (prediction stored)", len(accounting.predicted)),
        ("quarantined (state machine Catch)", len(accounting.quarantined)),
        ("in the stream DLQ", len(accounting.dlq)),
        ("UNACCOUNTED", accounting.unaccounted),
        ("  in two places", len(accounting.overlap)),
        ("scored again (client retries past the dedupe horizon)", accounting.double_counted),
        ("batches", len(costs)),
        ("ingest-to-prediction p50 / p95 / p99 (s)",
         " / ".join(f"{percentile(latencies, q):.3f}" for q in (50, 95, 99)) if latencies else "n/a"),
        ("throughput (events/s, first ingest to last prediction)",
         f"{len(predictions) / max(last_prediction - first_ingest, 1e-9):.0f}" if predictions else "n/a"),
        ("cost per 1k events (USD, modelled)", f"{1000 * cost_total / cost_events:.6f}" if cost_events else "n/a"),
        ("batch size now / optimizer", f"{optimizer.get('batch_size')} / {optimizer.get('reason')}"),
        ("drift (max PSI, feature)", f"{drift.get('max_psi', float('nan')):.3f} {drift.get('max_psi_feature', '')}"),
    ]
    width = max(len(k) for k, _ in lines)
    print("\n=== Real-time inference pipeline: local run report ===")
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    print("OK: every accepted event is accounted for." if accounting.ok else
          f"FAIL: {accounting.unaccounted} accepted events are unaccounted for, {len(accounting.overlap)} in two "
          "places.")
    return 0 if accounting.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
