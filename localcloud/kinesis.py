"""Kinesis -> Lambda event source mappings, polled locally (moto's own mappings would need Docker).

One thread per shard: GetShardIterator at the mapping's StartingPosition, GetRecords, accumulate up to BatchSize
records or until MaximumBatchingWindowInSeconds has passed since the first record of the batch (both re-read from
moto's GetEventSourceMapping before every batch, so an UpdateEventSourceMapping takes effect), build the event Lambda
builds and invoke the function through the local Lambda host.

Error handling, as Lambda does it for stream sources:
- ``ReportBatchItemFailures``: ``{"batchItemFailures": [{"itemIdentifier": seq}]}`` -> the batch is retried from the
  lowest failed sequence number (the records before it are done); an invalid identifier fails the whole batch.
- a function error retries the batch; with ``BisectBatchOnFunctionError`` the batch is split in halves and each half
  is retried on its own (splitting does not use up retry attempts; a single record is retried until
  MaximumRetryAttempts is exhausted).
- ``MaximumRetryAttempts`` (-1 = until the record expires) and ``MaximumRecordAgeInSeconds`` (-1 = never):
  exhausted or expired records are described in an on-failure record sent to ``DestinationConfig.OnFailure``
  (SQS or SNS) in the shape AWS uses, then the shard moves past them.
Retries use a short exponential backoff (``retry_base`` .. ``retry_cap`` seconds) so local runs stay quick.
Not modelled: ParallelizationFactor > 1, tumbling windows, filter criteria, resharding.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from . import mototools
from .lambdahost import InvokeResult, LambdaHost
from .specs import MappingInfo

log = logging.getLogger("localcloud.kinesis")

PAYLOAD_LIMIT = 6 * 1024 * 1024


@dataclass
class MappingConfig:
    enabled: bool
    batch_size: int
    window: float
    starting_position: str
    starting_timestamp: Any
    bisect: bool
    max_retries: int
    max_age: int
    report_item_failures: bool
    on_failure: str | None

    @classmethod
    def from_api(cls, live: dict, template: dict) -> "MappingConfig":
        def get(key, default=None):
            return live.get(key, template.get(key, default))

        destination = ((get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        state = live.get("State")
        enabled = (state in ("Enabled", "Enabling", "Updating", "Creating")) if state else bool(get("Enabled", True))
        return cls(enabled=enabled, batch_size=int(get("BatchSize", 100) or 100),
                   window=float(get("MaximumBatchingWindowInSeconds", 0) or 0),
                   starting_position=str(get("StartingPosition", "TRIM_HORIZON") or "TRIM_HORIZON"),
                   starting_timestamp=get("StartingPositionTimestamp"),
                   bisect=bool(get("BisectBatchOnFunctionError", False)),
                   max_retries=int(get("MaximumRetryAttempts", -1) if get("MaximumRetryAttempts") is not None else -1),
                   max_age=int(get("MaximumRecordAgeInSeconds", -1) if get("MaximumRecordAgeInSeconds") is not None
                               else -1),
                   report_item_failures="ReportBatchItemFailures" in (get("FunctionResponseTypes") or []),
                   on_failure=destination)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


class ShardPoller:
    def __init__(self, mapping: MappingInfo, shard_id: str, *, host: LambdaHost, clients: dict[str, Any],
                 region: str, stop: threading.Event, poll_interval: float = 0.1, retry_base: float = 0.1,
                 retry_cap: float = 1.0):
        self.mapping = mapping
        self.shard_id = shard_id
        self.host = host
        self.kinesis = clients["kinesis"]
        self.lambda_ = clients["lambda"]
        self.clients = clients
        self.region = region
        self.stop_event = stop
        self.poll_interval = poll_interval
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.stream_name = mapping.event_source_arn.split("/", 1)[1]
        self.buffer: list[dict] = []
        self.busy = False
        self.drained_upto = 0          # every record up to this sequence number has been fetched
        self.position: str | None = None
        self.batches = 0
        self.records_delivered = 0
        self.records_failed = 0
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"kinesis:{mapping.logical_id}:{shard_id}")

    # -- state --------------------------------------------------------------------------------------------------
    def idle(self, tip: int) -> bool:
        return not self.busy and not self.buffer and self.drained_upto >= tip

    def config(self) -> MappingConfig:
        live = self.lambda_.get_event_source_mapping(UUID=self.mapping.uuid)
        return MappingConfig.from_api(live, self.mapping.properties)

    # -- loop ---------------------------------------------------------------------------------------------------
    def _iterator(self, config: MappingConfig) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": self.shard_id}
        if self.position is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self.position)
        elif config.starting_position == "AT_TIMESTAMP" and config.starting_timestamp is not None:
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=config.starting_timestamp)
        elif config.starting_position == "LATEST":
            kwargs["ShardIteratorType"] = "LATEST"
            self.drained_upto = mototools.shard_tips(self.mapping.event_source_arn).get(self.shard_id, 0)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        return self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"]

    def _run(self) -> None:
        iterator: str | None = None
        config: MappingConfig | None = None
        window_started: float | None = None
        config_read = 0.0
        while not self.stop_event.is_set():
            try:
                now = time.monotonic()
                # the mapping is re-read when a batch's first records arrive (an update applies to the next batch)
                # and every second; not on every fetch while a batch fills (that doubled the poller's calls)
                if config is None or now - config_read > 1.0 or config_read < (window_started or 0):
                    config, config_read = self.config(), now
                if not config.enabled:
                    self.stop_event.wait(0.5)
                    continue
                if iterator is None:
                    iterator = self._iterator(config)
                if len(self.buffer) < config.batch_size:
                    fetched = self._fetch(iterator, config.batch_size)
                    if fetched is None:  # the iterator expired: get a new one
                        iterator = None
                        continue
                    iterator, arrived = fetched
                    if arrived and window_started is None:
                        window_started = time.monotonic()
                if not self.buffer:
                    window_started = None
                    self.stop_event.wait(self.poll_interval)
                    continue
                if config_read < (window_started or 0):
                    continue  # records arrived: re-read the mapping (an UpdateEventSourceMapping applies now)
                if self._filling(config, window_started):
                    continue
                self._deliver_next(config)
                window_started = time.monotonic() if self.buffer else None
            except Exception as exc:  # noqa: BLE001 - keep polling (moto may have been reset under us)
                if self.stop_event.is_set():
                    return
                if isinstance(exc, ClientError) and exc.response["Error"]["Code"] == "ResourceNotFoundException" \
                        and exc.operation_name == "GetEventSourceMapping":
                    # the mapping was deleted (or moto reset under the cloud by a test's mock_aws): as in AWS, a
                    # deleted mapping delivers no more batches, so its pollers stop
                    log.info("poller %s/%s: the event source mapping is gone; stopping", self.mapping.logical_id,
                             self.shard_id)
                    return
                self._recover(exc)
                iterator = None

    def _fetch(self, iterator: str, batch_size: int) -> tuple[str | None, bool] | None:
        """GetRecords into the buffer, up to the batch size: the next iterator and whether records arrived; None
        when the iterator expired."""
        tip = mototools.shard_tips(self.mapping.event_source_arn).get(self.shard_id, 0)
        try:
            response = self.kinesis.get_records(ShardIterator=iterator,
                                                Limit=min(10000, batch_size - len(self.buffer)))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExpiredIteratorException":
                return None
            raise
        records = response.get("Records", [])
        if records:
            self.buffer.extend(records)
            self.drained_upto = max(self.drained_upto, int(records[-1]["SequenceNumber"]))
        else:
            self.drained_upto = max(self.drained_upto, tip)
        return response.get("NextShardIterator"), bool(records)

    def _filling(self, config: MappingConfig, window_started: float | None) -> bool:
        """True (after a wait) while the batch is neither full nor past its batching window."""
        full = len(self.buffer) >= config.batch_size
        waited = time.monotonic() - (window_started or time.monotonic())
        if not full and waited < config.window:
            # the batch is filling: fetch again after poll_interval, not at once (a shard that trickles in
            # was otherwise read a few records per call, as fast as the gateway answered)
            self.stop_event.wait(min(self.poll_interval, config.window - waited))
            return True
        return False

    def _deliver_next(self, config: MappingConfig) -> None:
        self.busy = True
        try:
            batch = self._take_batch(config.batch_size)
            self._deliver(batch, config)
            self.position = batch[-1]["SequenceNumber"]
        finally:
            self.busy = False

    def _recover(self, exc: Exception) -> None:
        """After an error: log it, drop the buffer and re-read from the last delivered position after a second."""
        error = f"{type(exc).__name__}: {exc}"
        # warn once per distinct error (moto may have been reset by a test's mock_aws), then debug
        (log.debug if error == self.last_error else log.warning)(
            "poller %s/%s: %s", self.mapping.logical_id, self.shard_id, error)
        self.last_error = error
        self.buffer = []  # re-read from the last delivered position
        self.drained_upto = int(self.position or 0)
        self.busy = False
        self.stop_event.wait(1.0)

    def _take_batch(self, batch_size: int) -> list[dict]:
        size, count = 0, 0
        for record in self.buffer[:batch_size]:
            size += len(record["Data"]) * 4 // 3 + 400
            if count and size > PAYLOAD_LIMIT:
                break
            count += 1
        batch, self.buffer = self.buffer[:count], self.buffer[count:]
        return batch

    # -- delivery -----------------------------------------------------------------------------------------------
    def event(self, records: list[dict]) -> dict:
        spec = self.host.spec(self.mapping.function_name)
        return {"Records": [{
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                        "sequenceNumber": r["SequenceNumber"], "data": base64.b64encode(r["Data"]).decode(),
                        "approximateArrivalTimestamp": round(r["ApproximateArrivalTimestamp"].timestamp(), 3)},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": f"{self.shard_id}:{r['SequenceNumber']}", "eventName": "aws:kinesis:record",
            "invokeIdentityArn": spec.role_arn, "awsRegion": self.region,
            "eventSourceARN": self.mapping.event_source_arn} for r in records]}

    def _deliver(self, records: list[dict], config: MappingConfig) -> None:
        attempts = 0
        pending = records
        last: InvokeResult | None = None
        while pending:
            if self.stop_event.is_set():
                return
            if config.max_age >= 0:
                now = time.time()
                expired = 0
                while expired < len(pending) and \
                        now - pending[expired]["ApproximateArrivalTimestamp"].timestamp() > config.max_age:
                    expired += 1
                if expired:
                    self._on_failure(pending[:expired], config, "RecordAgeExceeded", last, attempts)
                    pending = pending[expired:]
                    if not pending:
                        return
            last = self.host.invoke(self.mapping.function_name, self.event(pending))
            self.batches += 1
            if last.ok:
                failed_index = _failed_index(last, pending, config)
                if failed_index is None:
                    self.records_delivered += len(pending)
                    return
                self.records_delivered += failed_index
                pending = pending[failed_index:]
            else:
                log.info("%s: %s failed on %d records: %s", self.mapping.logical_id, self.mapping.function_name,
                         len(pending), last.payload[:300])
                if config.bisect and len(pending) > 1:
                    middle = len(pending) // 2
                    self._deliver(pending[:middle], config)
                    self._deliver(pending[middle:], config)
                    return
            attempts += 1
            if 0 <= config.max_retries < attempts:
                self._on_failure(pending, config, "RetryAttemptsExhausted", last, attempts)
                return
            self.stop_event.wait(min(self.retry_cap, self.retry_base * 2 ** (attempts - 1)))

    def _on_failure(self, records: list[dict], config: MappingConfig, condition: str, last: InvokeResult | None,
                    attempts: int) -> None:
        self.records_failed += len(records)
        record = on_failure_record(records, condition, last, attempts, shard_id=self.shard_id,
                                   function_arn=self.host.spec(self.mapping.function_name).arn,
                                   stream_arn=self.mapping.event_source_arn)
        destination = config.on_failure
        log.info("%s: %d records (%s..%s) discarded: %s", self.mapping.logical_id, len(records),
                 records[0]["SequenceNumber"], records[-1]["SequenceNumber"], condition)
        if destination:
            _send_on_failure(self.clients, destination, json.dumps(record), self.mapping.logical_id)


def _failed_index(result: InvokeResult, pending: list[dict], config: MappingConfig) -> int | None:
    """None when the whole batch succeeded, else the index to resume from (ReportBatchItemFailures)."""
    if not config.report_item_failures:
        return None
    try:
        body = result.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not body.get("batchItemFailures"):
        return None
    positions = {r["SequenceNumber"]: i for i, r in enumerate(pending)}
    indexes = []
    for failure in body["batchItemFailures"]:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or str(identifier) not in positions:
            return 0  # an invalid response fails the whole batch
        indexes.append(positions[str(identifier)])
    return min(indexes)


def on_failure_record(records: list[dict], condition: str, last: InvokeResult | None, attempts: int, *,
                      shard_id: str, function_arn: str, stream_arn: str) -> dict:
    """What Lambda sends to a Kinesis mapping's on-failure destination for records it discards."""
    return {
        "requestContext": {"requestId": last.request_id if last else str(uuid.uuid4()),
                           "functionArn": function_arn, "condition": condition,
                           "approximateInvokeCount": max(attempts, 1) if last else 0},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": (last.function_error or "") if last else ""},
        "version": "1.0",
        "timestamp": _iso(time.time()),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["SequenceNumber"],
            "endSequenceNumber": records[-1]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": _iso(records[0]["ApproximateArrivalTimestamp"].timestamp()),
            "approximateArrivalOfLastRecord": _iso(records[-1]["ApproximateArrivalTimestamp"].timestamp()),
            "batchSize": len(records),
            "streamArn": stream_arn}}


def _send_on_failure(clients: dict[str, Any], destination: str, body: str, logical_id: str) -> None:
    """To the SQS queue or SNS topic of DestinationConfig.OnFailure."""
    if ":sqs:" in destination:
        sqs = clients["sqs"]
        url = sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[1])["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=body)
    elif ":sns:" in destination:
        clients["sns"].publish(TopicArn=destination, Message=body)
    else:
        log.warning("%s: on-failure destination %s is not supported locally", logical_id, destination)


class KinesisPollers:
    """All pollers of all Kinesis event source mappings."""

    def __init__(self, host: LambdaHost, clients: dict[str, Any], region: str, role_clients=None, **options):
        self.host = host
        self.clients = clients
        # mapping -> the clients its poller uses: Lambda reads the stream and writes the on-failure destination with
        # the function's execution role (localcloud/iam.py checks those calls); default: ``clients``
        self.role_clients = role_clients or (lambda mapping: clients)
        self.region = region
        self.options = options
        self.stop_event = threading.Event()
        self.pollers: list[ShardPoller] = []

    def start(self, mappings: list[MappingInfo]) -> None:
        for mapping in mappings:
            if ":kinesis:" not in mapping.event_source_arn:
                continue
            stream = mapping.event_source_arn.split("/", 1)[1]
            shards = self.clients["kinesis"].list_shards(StreamName=stream)["Shards"]
            for shard in shards:
                poller = ShardPoller(mapping, shard["ShardId"], host=self.host, clients=self.role_clients(mapping),
                                     region=self.region, stop=self.stop_event, **self.options)
                self.pollers.append(poller)
                poller.thread.start()

    def idle(self) -> bool:
        tips: dict[str, dict[str, int]] = {}
        for poller in self.pollers:
            arn = poller.mapping.event_source_arn
            if arn not in tips:
                tips[arn] = mototools.shard_tips(arn)
            if not poller.idle(tips[arn].get(poller.shard_id, 0)):
                return False
        return True

    def stats(self) -> list[dict]:
        return [{"mapping": p.mapping.logical_id, "shard": p.shard_id, "batches": p.batches,
                 "records_delivered": p.records_delivered, "records_failed": p.records_failed,
                 "buffered": len(p.buffer), "busy": p.busy, "last_error": p.last_error} for p in self.pollers]

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for poller in self.pollers:
            poller.thread.join(timeout)
