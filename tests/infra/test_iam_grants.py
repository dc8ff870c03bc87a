"""Least privilege, per function: each role allows the DynamoDB actions its function calls (infra/grants.py
TABLE_ACCESS) on exactly the tables and index it calls them on, and nothing of the broad CDK grants
(grant_read_write_data adds DeleteItem, Scan, ConditionCheckItem, DescribeTable and stream reads). That the pipeline
needs no more is proven locally: the local cloud enforces these grants on every call (localcloud/iam.py, tests/e2e).

AWS behaviour relied on (Service Authorization Reference, "Actions, resources, and condition keys for Amazon DynamoDB",
list_amazondynamodb): each DynamoDB API is authorized by the action of the same name on the table ARN
(arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}); Query and Scan on an index by the index ARN
(.../table/${TableName}/index/${IndexName}); BatchGetItem/BatchWriteItem by their own actions on each table named.
"""
from __future__ import annotations

from infra.grants import TABLE_ACCESS


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def _dynamodb_grants(synth, function_id: str) -> dict[str, set[str]]:
    """Table (or "<table>/index/<name>") -> the dynamodb actions the role allows on it."""
    tables = {synth.logical_id(t, "AWS::DynamoDB::Table"): t
              for t in ("EventsTable", "PredictionsTable", "FeaturesTable", "CostTable", "StateTable")}
    grants: dict[str, set[str]] = {}
    for statement in synth.policy_statements(function_id.removesuffix("Function") + "Role"):
        actions = {a for a in _list(statement["Action"]) if a.startswith("dynamodb:")}
        if not actions:
            continue
        assert statement["Effect"] == "Allow"
        for resource in _list(statement["Resource"]):
            if "Fn::GetAtt" in resource:
                target = tables[resource["Fn::GetAtt"][0]]
            else:   # {"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, "/index/<name>"]]}
                parts = resource["Fn::Join"][1]
                target = tables[parts[0]["Fn::GetAtt"][0]] + parts[1]
            grants.setdefault(target, set()).update(a.removeprefix("dynamodb:") for a in actions)
    return grants


def test_each_role_allows_exactly_the_dynamodb_calls_of_its_function(synth):
    for function_id, expected in TABLE_ACCESS.items():
        assert _dynamodb_grants(synth, function_id) == {t: set(a) for t, a in expected.items()}, function_id


def test_no_role_keeps_the_broad_grants(synth):
    unused = {"DeleteItem", "ConditionCheckItem", "DescribeTable", "GetRecords", "GetShardIterator"}
    for function_id in TABLE_ACCESS:
        for target, actions in _dynamodb_grants(synth, function_id).items():
            assert not actions & unused, (function_id, target, actions & unused)
            assert "*" not in "".join(actions)
    # Scan: only the API's /stats reads the state table's stream counters with a filtered Scan
    scans = {(f, t) for f in TABLE_ACCESS for t, a in _dynamodb_grants(synth, f).items() if "Scan" in a}
    assert scans == {("ApiFunction", "StateTable")}
    # writes of predictions: store_predictions only, and BatchWriteItem only
    writers = {f: a for f in TABLE_ACCESS for t, a in _dynamodb_grants(synth, f).items()
               if t == "PredictionsTable" and a - {"GetItem", "BatchGetItem", "Query"}}
    assert writers == {"StorePredictionsFunction": {"BatchWriteItem"}}


def test_the_api_writes_to_the_stream_with_put_records_only(synth):
    api = synth.policy_statements("ApiRole")
    kinesis = {a for s in api for a in _list(s["Action"]) if a.startswith("kinesis:")}
    assert kinesis == {"kinesis:PutRecords"}   # pipeline/ingest.py batches every write (no PutRecord, no ListShards)
