"""Promotion and rollback against the local cloud: versioned artifacts + manifest in S3, a new Model and
EndpointConfig, UpdateEndpoint (implemented by the local cloud: moto has none), the stand-in serving the new
config (a PyTorch model replacing an XGBoost one), the live version in the state table; rollback restores it."""
import json

import numpy as np
import pytest
import torch
import xgboost

from cloudkit import FakeCdkOut, aws_client
from localcloud import LocalCloud
from model import registry, train, train_pytorch
from pipeline.features import FEATURE_NAMES
from pipeline.model_client import parse_scores, to_csv
from scripts import promote

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    x, y = train.build_dataset(users=40, hours=4, seed=4)
    booster, metrics = train.train(x, y, seed=4, rounds=10)
    xgb = train.write_artifact(booster, metrics, {}, root / "xgb")
    net, tmetrics = train_pytorch.train(x, y, seed=4, epochs=3)
    torch_artifact = train_pytorch.write_artifact(net, tmetrics, {}, root / "torch", "v1", list(FEATURE_NAMES))
    return {"x": x, "booster": booster, "xgb": xgb, "net": net, "torch": torch_artifact}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("promotion")
    out = FakeCdkOut(root / "cdk.out", stack="PromotionTestStack")
    key = out.file_asset(models["xgb"].read_bytes())
    out.add("ArtifactsBucket", "AWS::S3::Bucket", {})
    out.add("StateTable", "AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"})
    out.add("ModelRole", "AWS::IAM::Role", {"AssumeRolePolicyDocument": {}})
    out.add("Model", "AWS::SageMaker::Model", {
        "ExecutionRoleArn": {"Fn::GetAtt": ["ModelRole", "Arn"]},
        "PrimaryContainer": {"Image": IMAGE, "Environment": {"MODEL_VERSION": "xgb-1"}, "ModelDataUrl": {
            "Fn::Sub": f"s3://cdk-hnb659fds-assets-${{AWS::AccountId}}-${{AWS::Region}}/{key}"}}})
    out.add("EndpointConfig", "AWS::SageMaker::EndpointConfig", {"ProductionVariants": [
        {"ModelName": {"Fn::GetAtt": ["Model", "ModelName"]}, "VariantName": "primary", "InitialVariantWeight": 1,
         "ServerlessConfig": {"MaxConcurrency": 1, "MemorySizeInMB": 2048}}]})
    out.add("Endpoint", "AWS::SageMaker::Endpoint",
            {"EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]}})
    out.output("EndpointName", {"Fn::GetAtt": ["Endpoint", "EndpointName"]})
    out.output("ArtifactsBucketName", {"Ref": "ArtifactsBucket"})
    out.output("StateTableName", {"Ref": "StateTable"})
    out.output("ModelVariants", {"Fn::Join": ["", [  # as infra/stack.py writes it (one endpoint per variant)
        '[{"name":"primary","weight":1,"kind":"xgboost","model_version":"xgb-1","endpoint":"',
        {"Fn::GetAtt": ["Endpoint", "EndpointName"]}, '"}]']]})
    with LocalCloud(cdk_out=out.write(), state_dir=root / "state", api_port=0, run_schedules=False) as c:
        c.deploy()
        yield c


def scores(cloud, rows) -> list[float]:
    response = aws_client(cloud, "sagemaker-runtime").invoke_endpoint(
        EndpointName=cloud.outputs["EndpointName"], ContentType="text/csv", Accept="text/csv", Body=to_csv(rows))
    return parse_scores(response["Body"].read())


def test_promote_a_pytorch_version_then_roll_back(cloud, models):
    sm, s3, ddb = (aws_client(cloud, s) for s in ("sagemaker", "s3", "dynamodb"))
    bucket, endpoint = cloud.outputs["ArtifactsBucketName"], cloud.outputs["EndpointName"]
    table = cloud.outputs["StateTableName"]
    rows = models["x"][:50]
    xgb_scores = models["booster"].predict(xgboost.DMatrix(rows))
    with torch.inference_mode():
        torch_scores = torch.sigmoid(models["net"](torch.tensor(rows, dtype=torch.float32))).numpy()
    assert np.allclose(scores(cloud, rows.tolist()), xgb_scores, atol=1e-6)
    original = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]

    entry = registry.upload(s3, bucket, models["torch"], "torch-2")
    assert entry["kind"] == "pytorch" and len(entry["sha256"]) == 64
    assert registry.upload(s3, bucket, models["torch"], "torch-2") == entry          # idempotent
    with pytest.raises(registry.PromotionError, match="already exists"):
        registry.upload(s3, bucket, models["xgb"], "torch-2")
    with pytest.raises(registry.PromotionError, match="not in"):
        registry.promote(sm=sm, s3=s3, ddb=ddb, bucket=bucket, endpoint=endpoint, version="nope")

    promoted = registry.promote(sm=sm, s3=s3, ddb=ddb, bucket=bucket, endpoint=endpoint, version="torch-2",
                                state_table=table)
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == promoted["endpoint_config"]
    model = sm.describe_model(ModelName=promoted["model"])["PrimaryContainer"]
    assert "pytorch-inference:2.6.0-cpu-py312" in model["Image"] and model["ModelDataUrl"] == entry["s3_uri"]
    assert np.allclose(scores(cloud, rows.tolist()), torch_scores, atol=1e-6)   # the stand-in serves the new config
    live = ddb.get_item(TableName=table, Key={"pk": {"S": "model"}})["Item"]["variants"]["L"][0]["M"]
    assert (live["model_version"]["S"], live["kind"]["S"]) == ("torch-2", "pytorch")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="models/manifest.json")["Body"].read())
    assert manifest["live"] == {"primary": "torch-2"} and manifest["versions"]["torch-2"]["sha256"] == entry["sha256"]

    rolled = registry.rollback(sm=sm, s3=s3, ddb=ddb, bucket=bucket, endpoint=endpoint, state_table=table)
    assert rolled["endpoint_config"] == original
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == original
    assert np.allclose(scores(cloud, rows.tolist()), xgb_scores, atol=1e-6)
    live = ddb.get_item(TableName=table, Key={"pk": {"S": "model"}})["Item"]["variants"]["L"][0]["M"]
    assert live["model_version"]["S"] == "xgb-1"
    with pytest.raises(registry.PromotionError, match="nothing to roll back"):
        registry.rollback(sm=sm, s3=s3, ddb=ddb, bucket=bucket, endpoint=endpoint, state_table=table)


def test_update_endpoint_errors(cloud):
    from botocore.exceptions import ClientError

    sm = aws_client(cloud, "sagemaker")
    with pytest.raises(ClientError, match="Could not find endpoint configuration"):
        sm.update_endpoint(EndpointName=cloud.outputs["EndpointName"], EndpointConfigName="missing")
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.update_endpoint(EndpointName="missing", EndpointConfigName="missing")


def test_promote_script_local_mode(cloud, models, capsys):
    """scripts/promote.py --local, as the README documents it, against the local cloud: every command finds the
    stack's names in the state file (the outputs the --stack mode reads from CloudFormation)."""
    state = json.loads((cloud.state_dir / "localcloud.json").read_text())
    assert state["outputs"] == cloud.outputs
    assert json.loads(state["outputs"]["ModelVariants"])[0]["endpoint"] == cloud.outputs["EndpointName"]
    local = ["--local", "--state-dir", str(cloud.state_dir)]

    def run(*command: str) -> dict:
        capsys.readouterr()
        assert promote.main(local + list(command)) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    before = run("status")
    assert list(before["endpoints"]) == ["primary"]
    original = before["endpoints"]["primary"]["endpoint_config"]
    assert before["endpoints"]["primary"]["endpoint"] == cloud.outputs["EndpointName"]
    uploaded = run("upload", str(models["torch"]), "--version", "torch-script")
    assert uploaded["kind"] == "pytorch"
    promoted = run("promote", "torch-script", "--variant", "primary")
    sm = aws_client(cloud, "sagemaker")
    assert sm.describe_endpoint(EndpointName=cloud.outputs["EndpointName"])["EndpointConfigName"] == \
        promoted["endpoint_config"]
    live = run("status")
    assert "torch-script" in live["versions"] and live["live"]["primary"] == "torch-script"
    rows = {r["version"]: r for r in run("list", "--json")}
    assert rows["torch-script"]["live"] and rows["torch-script"]["variants"] == ["primary"]
    assert rows["torch-script"]["kind"] == "pytorch" and rows["torch-script"]["metrics"]["holdout_auc"] > 0
    assert rows["torch-script"]["created_at"].endswith("+00:00")
    capsys.readouterr()
    assert promote.main(local + ["list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["version", "kind", "set", "holdout", "AUC", "created", "(UTC)", "live", "on"]
    assert any(line.startswith("torch-script") and line.endswith("primary") for line in table)
    assert live["endpoints"]["primary"]["endpoint_config"] == promoted["endpoint_config"]
    rolled = run("rollback")
    assert rolled["endpoint_config"] == original
    assert run("status")["endpoints"]["primary"]["endpoint_config"] == original


def test_promote_script_local_mode_errors(tmp_path, capsys):
    assert promote.main(["--local", "--state-dir", str(tmp_path), "status"]) == 1
    assert "no running local cloud" in capsys.readouterr().err
