"""The stack's storage and messaging: the Kinesis stream, the DynamoDB tables of pipeline/contract.py, the two
queues (the stream's on-failure destination and the quarantine) and the buckets.

Built from explicit inputs into the stack's scope, so the logical ids are the construct ids here.
"""
from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import (
    Duration,
    RemovalPolicy,
    aws_dynamodb as dynamodb,
    aws_kinesis as kinesis,
    aws_s3 as s3,
    aws_sqs as sqs,
)
from constructs import Construct

from pipeline import contract

from .config import Config, TableCapacity

ATTRIBUTE_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER,
                   "B": dynamodb.AttributeType.BINARY}


@dataclass
class Storage:
    stream: kinesis.Stream
    tables: dict[str, dynamodb.Table]      # by construct id (pipeline/contract.py TABLES)
    stream_dlq: sqs.Queue
    quarantine_queue: sqs.Queue
    access_logs_bucket: s3.Bucket
    artifacts_bucket: s3.Bucket


def build_storage(scope: Construct, cfg: Config, removal: RemovalPolicy) -> Storage:
    stream = kinesis.Stream(
        scope, "EventsStream", stream_mode=kinesis.StreamMode.PROVISIONED, shard_count=cfg.shard_count,
        encryption=kinesis.StreamEncryption.MANAGED, retention_period=Duration.hours(24),
        # Always deleted with the stack: records live 24 h anyway, and a retained stream keeps billing shards.
        removal_policy=RemovalPolicy.DESTROY)
    tables = {construct_id: table(scope, construct_id, spec, cfg.table_capacity, removal)
              for construct_id, spec in contract.TABLES.items()}
    stream_dlq, quarantine_queue = (queue(scope, name, removal) for name in ("StreamDlq", "QuarantineQueue"))
    access_logs, artifacts = _buckets(scope)
    return Storage(stream, tables, stream_dlq, quarantine_queue, access_logs, artifacts)


def table(scope: Construct, construct_id: str, spec: contract.Table, capacity: TableCapacity,
          removal: RemovalPolicy) -> dynamodb.Table:
    provisioned = capacity.min_capacity if capacity.provisioned else None
    created = dynamodb.Table(
        scope, construct_id,
        partition_key=dynamodb.Attribute(name=spec.partition_key, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name=spec.sort_key, type=dynamodb.AttributeType.STRING)
        if spec.sort_key else None,
        billing_mode=dynamodb.BillingMode.PROVISIONED if capacity.provisioned
        else dynamodb.BillingMode.PAY_PER_REQUEST,
        read_capacity=provisioned, write_capacity=provisioned,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True),
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        time_to_live_attribute=spec.ttl,
        removal_policy=removal)
    if capacity.provisioned:
        # target tracking keeps consumed / provisioned near the target: the cost model prices each consumed unit
        # at 1/target of a unit-hour's share (pipeline/costs.py)
        for scaling in (created.auto_scale_read_capacity, created.auto_scale_write_capacity):
            scaling(min_capacity=capacity.min_capacity, max_capacity=capacity.max_capacity) \
                .scale_on_utilization(target_utilization_percent=capacity.target_utilization_percent)
    for index in spec.indexes:
        _index(created, index, capacity)
    return created


def _index(table: dynamodb.Table, index: contract.Index, capacity: TableCapacity) -> None:
    provisioned = capacity.min_capacity if capacity.provisioned else None
    table.add_global_secondary_index(
        index_name=index.name,
        partition_key=dynamodb.Attribute(name=index.partition_key, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name=index.sort_key, type=ATTRIBUTE_TYPES[index.sort_key_type]),
        projection_type=dynamodb.ProjectionType.ALL, read_capacity=provisioned, write_capacity=provisioned)
    if capacity.provisioned:
        for scaling in (table.auto_scale_global_secondary_index_read_capacity,
                        table.auto_scale_global_secondary_index_write_capacity):
            scaling(index.name, min_capacity=capacity.min_capacity, max_capacity=capacity.max_capacity) \
                .scale_on_utilization(target_utilization_percent=capacity.target_utilization_percent)


def queue(scope: Construct, construct_id: str, removal: RemovalPolicy) -> sqs.Queue:
    return sqs.Queue(
        scope, construct_id, encryption=sqs.QueueEncryption.KMS_MANAGED, enforce_ssl=True,
        retention_period=Duration.days(14), visibility_timeout=Duration.minutes(5), removal_policy=removal)


def _buckets(scope: Construct) -> tuple[s3.Bucket, s3.Bucket]:
    access_logs = s3.Bucket(
        scope, "AccessLogsBucket", encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))])
    artifacts = s3.Bucket(
        scope, "ArtifactsBucket", encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_logs, server_access_logs_prefix="artifacts-bucket/",
        lifecycle_rules=[
            # Batch journals (process_stream: each record's outcome and features; the execution input of a
            # large batch; redelivery and the drift sample read them) and large predictions (invoke_model ->
            # store_predictions): kept one day longer than the quarantine queue keeps a batch (14 days), so a
            # quarantined batch's pointer still resolves when it is redriven.
            s3.LifecycleRule(id="expire-batch-journals", prefix="journal/", expiration=Duration.days(15)),
            s3.LifecycleRule(id="expire-batch-payloads", prefix="batches/", expiration=Duration.days(15)),
            s3.LifecycleRule(id="expire-batch-predictions", prefix="predictions/", expiration=Duration.days(15)),
            s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=Duration.days(30)),
        ])
    return access_logs, artifacts
