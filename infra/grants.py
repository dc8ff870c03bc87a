"""IAM: least privilege, per function. Every function's role gets exactly the calls its code makes: the DynamoDB
actions of TABLE_ACCESS per table and index, and the S3, Kinesis, SageMaker, SQS, Step Functions, Lambda and
CloudWatch statements below, each on the narrowest resource. The local cloud enforces these grants on every call
(localcloud/iam.py); tests/infra/test_iam_grants.py holds each role to them.
"""
from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import (
    aws_dynamodb as dynamodb,
    aws_iam as iam,
    aws_kinesis as kinesis,
    aws_lambda as lambda_,
    aws_s3 as s3,
    aws_s3_assets as s3_assets,
    aws_sqs as sqs,
    aws_stepfunctions as sfn,
)

from .ids import pascal

# DynamoDB: the actions each function calls, per table ("<table>/index/<name>" for an index), and nothing more
# (grant_read_write_data would add DeleteItem, Scan, ConditionCheckItem and stream reads nothing uses; issue 12). The
# calls: functions/pipeline/store.py and its callers. The local cloud checks every call against these grants
# (localcloud/iam.py), so a call missing here fails tests/e2e; tests/infra holds each role to this table.
TABLE_ACCESS: dict[str, dict[str, tuple[str, ...]]] = {
    "ApiFunction": {                                  # ingest counters, queries, /stats, /predict
        "StateTable": ("GetItem", "UpdateItem", "Scan"), "FeaturesTable": ("GetItem", "BatchGetItem"),
        "CostTable": ("Query",), "PredictionsTable": ("GetItem",), "PredictionsTable/index/by_user": ("Query",)},
    "ProcessStreamFunction": {                        # features, per-shard counters, rejected records
        "FeaturesTable": ("GetItem", "BatchGetItem", "BatchWriteItem"),
        "StateTable": ("GetItem", "BatchGetItem", "UpdateItem"),  # the counters read with the users' hot items
        "EventsTable": ("BatchWriteItem",)},
    "InvokeModelFunction": {"StateTable": ("GetItem",)},                       # config, live model
    "StorePredictionsFunction": {                     # predictions, counters, the rolling median sample
        "PredictionsTable": ("BatchWriteItem",), "StateTable": ("GetItem", "PutItem", "UpdateItem")},
    "RecordCostFunction": {"CostTable": ("PutItem",), "StateTable": ("GetItem", "UpdateItem")},
    "RetrainBatchSizeFunction": {"CostTable": ("Query",), "StateTable": ("GetItem", "PutItem")},
    "MonitorDriftFunction": {"StateTable": ("GetItem",)},                      # the live model
}


@dataclass
class Granted:
    """What the functions call, besides their tables."""
    functions: dict[str, lambda_.Function]
    tables: dict[str, dynamodb.Table]
    bucket: s3.Bucket                       # the artifacts bucket
    stream: kinesis.Stream
    queues: list[sqs.Queue]                 # the stream DLQ and the quarantine queue (GET /stats reads their depth)
    state_machine: sfn.StateMachine
    stream_mapping: lambda_.EventSourceMapping
    endpoint_arns: list[str]
    model_asset: s3_assets.Asset
    metrics_namespace: str


def grant_all(g: Granted) -> None:
    _table_calls(g)
    _api(g)
    _process_stream(g)
    _state_machine_tasks(g)
    _retrain(g)
    _drift(g)


def _table_calls(g: Granted) -> None:
    for function_id, tables in TABLE_ACCESS.items():
        for target, actions in tables.items():
            table_id, _, index = target.partition("/index/")
            arn = g.tables[table_id].table_arn + (f"/index/{index}" if index else "")
            g.functions[function_id].add_to_role_policy(iam.PolicyStatement(
                sid=pascal(target.replace("/index/", "-")) + "Calls",
                actions=[f"dynamodb:{action}" for action in actions], resources=[arn]))


def _invoke_endpoint(g: Granted) -> iam.PolicyStatement:
    return iam.PolicyStatement(sid="InvokeEndpoint", actions=["sagemaker:InvokeEndpoint"], resources=g.endpoint_arns)


def _api(g: Granted) -> None:
    """Ingest to Kinesis, on-demand /predict, the registry's manifest (GET /models), queue depths."""
    api = g.functions["ApiFunction"]
    api.add_to_role_policy(iam.PolicyStatement(
        sid="IngestToStream", actions=["kinesis:PutRecords"], resources=[g.stream.stream_arn]))
    api.add_to_role_policy(_invoke_endpoint(g))
    api.add_to_role_policy(iam.PolicyStatement(   # model/registry.py
        sid="ReadModelRegistry", actions=["s3:GetObject"],
        resources=[g.bucket.arn_for_objects("models/manifest.json")]))
    api.add_to_role_policy(iam.PolicyStatement(
        sid="QueueDepths", actions=["sqs:GetQueueAttributes"], resources=[q.queue_arn for q in g.queues]))


def _process_stream(g: Granted) -> None:
    """The batch journal, start inference."""
    process = g.functions["ProcessStreamFunction"]
    process.add_to_role_policy(iam.PolicyStatement(
        sid="WriteBatchJournals", actions=["s3:PutObject", "s3:GetObject"],
        resources=[g.bucket.arn_for_objects("journal/*"), g.bucket.arn_for_objects("batches/*")]))
    g.state_machine.grant_start_execution(process)


def _state_machine_tasks(g: Granted) -> None:
    """InvokeModel scores on the endpoint (rows may come from S3, large predictions go there); StorePredictions reads
    them back."""
    invoke = g.functions["InvokeModelFunction"]
    invoke.add_to_role_policy(_invoke_endpoint(g))
    invoke.add_to_role_policy(iam.PolicyStatement(
        sid="ReadBatchPayloads", actions=["s3:GetObject"],
        resources=[g.bucket.arn_for_objects("journal/*"), g.bucket.arn_for_objects("batches/*")]))
    invoke.add_to_role_policy(iam.PolicyStatement(
        sid="WriteLargePredictions", actions=["s3:PutObject"], resources=[g.bucket.arn_for_objects("predictions/*")]))
    g.functions["StorePredictionsFunction"].add_to_role_policy(iam.PolicyStatement(
        sid="ReadLargePredictions", actions=["s3:GetObject"], resources=[g.bucket.arn_for_objects("predictions/*")]))


def _retrain(g: Granted) -> None:
    """Learn from the cost records, apply the batch size."""
    retrain = g.functions["RetrainBatchSizeFunction"]
    retrain.add_to_role_policy(iam.PolicyStatement(
        sid="WriteOptimizerModels", actions=["s3:PutObject"], resources=[g.bucket.arn_for_objects("optimizer/*")]))
    retrain.add_to_role_policy(iam.PolicyStatement(
        sid="TuneStreamMapping", actions=["lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping"],
        resources=[g.stream_mapping.event_source_mapping_arn]))


def _drift(g: Granted) -> None:
    """Recent features (the batch journals) vs the model's training baseline; the drift metrics its alarm watches."""
    drift = g.functions["MonitorDriftFunction"]
    drift.add_to_role_policy(iam.PolicyStatement(
        sid="ReadBatchJournals", actions=["s3:GetObject"], resources=[g.bucket.arn_for_objects("journal/*")]))
    drift.add_to_role_policy(iam.PolicyStatement(
        sid="ListBatchJournals", actions=["s3:ListBucket"], resources=[g.bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": ["journal/*"]}}))
    drift.add_to_role_policy(iam.PolicyStatement(
        sid="ReadModelArtifact", actions=["s3:GetObject"],
        resources=[g.model_asset.bucket.arn_for_objects(g.model_asset.s3_object_key),
                   g.bucket.arn_for_objects("models/*")]))
    drift.add_to_role_policy(iam.PolicyStatement(
        sid="PublishDriftMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
        conditions={"StringEquals": {"cloudwatch:namespace": g.metrics_namespace}}))
