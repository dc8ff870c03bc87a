"""DynamoDB capacity mode (cdk.json ``tableCapacity``): on demand by default, provisioned with auto scaling when asked.

Quotas relied on (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html, default,
per Region): provisioned capacity of one table or GSI at most 40,000 RCU and 40,000 WCU; the account's tables and
GSIs together at most 80,000 of each; at least 1 unit for any table or GSI. Auto scaling
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/AutoScaling.html) is Application Auto Scaling target
tracking on DynamoDBReadCapacityUtilization / DynamoDBWriteCapacityUtilization, per table and per GSI.
"""
from __future__ import annotations

import json

import pytest

from infra.config import Config, ConfigError

PROVISIONED = {"mode": "provisioned", "targetUtilizationPercent": 70, "minCapacity": 5, "maxCapacity": 10000}


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory, placeholder_artifact):
    """cdk.json with tableCapacity provisioned, synthesized with the cdk-nag checks (synth raises on a finding)."""
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out.provisioned")
    app, stack = build_app(outdir=str(outdir), overrides={"modelArtifact": str(placeholder_artifact),
                                                          "tableCapacity": PROVISIONED})
    app.synth()
    return outdir / f"{stack.artifact_id}.template.json"


def _of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == resource_type}


def test_on_demand_by_default(synth):
    tables = synth.of_type("AWS::DynamoDB::Table")
    assert len(tables) == 5
    assert all(t["Properties"]["BillingMode"] == "PAY_PER_REQUEST" for t in tables.values())
    assert not synth.of_type("AWS::ApplicationAutoScaling::ScalableTarget")
    profile = json.loads(synth.function("ProcessStreamFunction")["Environment"]["Variables"]["COST_PROFILE"])
    assert profile["table_capacity"] == "on_demand"


def test_provisioned_tables_and_index_scale_on_utilization(provisioned):
    template = json.loads(provisioned.read_text())
    tables = _of_type(template, "AWS::DynamoDB::Table")
    for table in tables.values():
        props = table["Properties"]
        assert props.get("BillingMode", "PROVISIONED") == "PROVISIONED"
        assert props["ProvisionedThroughput"] == {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        for index in props.get("GlobalSecondaryIndexes", []):
            assert index["ProvisionedThroughput"] == {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    targets = _of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    dimensions = sorted(t["Properties"]["ScalableDimension"] for t in targets.values())
    # five tables and the by_user index, reads and writes each
    assert dimensions == sorted(["dynamodb:table:ReadCapacityUnits", "dynamodb:table:WriteCapacityUnits"] * 5
                                + ["dynamodb:index:ReadCapacityUnits", "dynamodb:index:WriteCapacityUnits"])
    assert all(t["Properties"]["MinCapacity"] == 5 and t["Properties"]["MaxCapacity"] == 10000
               for t in targets.values())
    policies = _of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert len(policies) == 12
    for policy in policies.values():
        tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        assert tracking["TargetValue"] == 70
        assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] in (
            "DynamoDBReadCapacityUtilization", "DynamoDBWriteCapacityUtilization")
    env = [f["Properties"]["Environment"]["Variables"] for f in _of_type(template, "AWS::Lambda::Function").values()
           if "COST_PROFILE" in f["Properties"].get("Environment", {}).get("Variables", {})]
    assert env and all(json.loads(v["COST_PROFILE"])["table_capacity"] == "provisioned"
                       and json.loads(v["COST_PROFILE"])["table_target_utilization"] == 0.7 for v in env)


def test_provisioned_template_passes_cfn_lint(provisioned):
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(provisioned, config=ManualArgs(ignore_checks=["W3005"], regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


def _config(cdk_json: dict, capacity: dict) -> Config:
    return Config.from_mapping({**cdk_json["context"], "tableCapacity": capacity})


@pytest.mark.parametrize("capacity, message", [
    ({"mode": "serverless"}, "tableCapacity.mode"),
    ({**PROVISIONED, "maxCapacity": 40_001}, "tableCapacity.maxCapacity"),          # per-table quota 40,000
    ({**PROVISIONED, "maxCapacity": 14_000}, "account quota"),                       # 6 x 14,000 > 80,000
    ({**PROVISIONED, "minCapacity": 0}, "tableCapacity.minCapacity"),                # at least 1 unit
    ({**PROVISIONED, "minCapacity": 50, "maxCapacity": 40}, "larger than maxCapacity"),
    ({**PROVISIONED, "targetUtilizationPercent": 95}, "tableCapacity.targetUtilizationPercent"),
])
def test_capacity_settings_are_checked(cdk_json, capacity, message):
    with pytest.raises(ConfigError, match=message):
        _config(cdk_json, capacity)


def test_capacity_settings_at_the_quotas_are_accepted(cdk_json):
    config = _config(cdk_json, {**PROVISIONED, "minCapacity": 1, "maxCapacity": 13_333})   # 6 x 13,333 <= 80,000
    assert config.table_capacity.provisioned and config.table_capacity.max_capacity == 13_333
    assert _config(cdk_json, {"mode": "on_demand", "maxCapacity": 40_000}).table_capacity.provisioned is False
