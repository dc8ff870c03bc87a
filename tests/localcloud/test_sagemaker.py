"""The SageMaker runtime stand-in: the template's endpoint scores a model.tar.gz from S3; fault injection."""
import io
import json
import tarfile
import urllib.request

import numpy as np
import pytest
import xgboost
from botocore.exceptions import ClientError

from cloudkit import XGBOOST_IMAGE, FakeCdkOut, aws_client
from localcloud import LocalCloud
from localcloud.sagemaker import XGBoostContainer

ROWS = np.random.default_rng(7).normal(size=(40, 3))


def tiny_model() -> xgboost.Booster:
    labels = (ROWS[:, 0] + 0.5 * ROWS[:, 1] > 0).astype(float)
    return xgboost.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                         xgboost.DMatrix(ROWS, label=labels), num_boost_round=5)


def model_tarball(booster: xgboost.Booster) -> bytes:
    raw = bytes(booster.save_raw(raw_format="json"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(raw)
        archive.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def booster():
    return tiny_model()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, booster):
    root = tmp_path_factory.mktemp("sagemaker")
    out = FakeCdkOut(root / "cdk.out", stack="ModelTestStack")
    key = out.file_asset(model_tarball(booster))
    out.add("SageMakerRole", "AWS::IAM::Role", {"AssumeRolePolicyDocument": {}})
    out.add("Model", "AWS::SageMaker::Model", {
        "ExecutionRoleArn": {"Fn::GetAtt": ["SageMakerRole", "Arn"]},
        "PrimaryContainer": {"Image": XGBOOST_IMAGE, "ModelDataUrl": {
            "Fn::Sub": f"s3://cdk-hnb659fds-assets-${{AWS::AccountId}}-${{AWS::Region}}/{key}"}}})
    out.add("EndpointConfig", "AWS::SageMaker::EndpointConfig", {"ProductionVariants": [
        {"ModelName": {"Fn::GetAtt": ["Model", "ModelName"]}, "VariantName": "Primary", "InitialVariantWeight": 1,
         "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"},
        {"ModelName": {"Fn::GetAtt": ["Model", "ModelName"]}, "VariantName": "Shadow", "InitialVariantWeight": 0,
         "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]})
    out.add("Endpoint", "AWS::SageMaker::Endpoint",
            {"EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]}})
    out.output("EndpointName", {"Fn::GetAtt": ["Endpoint", "EndpointName"]})
    with LocalCloud(cdk_out=out.write(), state_dir=root / "state", api_port=0, run_schedules=False) as c:
        c.deploy()
        yield c


def csv(rows) -> bytes:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode()


def invoke(cloud, body: bytes, **kwargs):
    return aws_client(cloud, "sagemaker-runtime").invoke_endpoint(
        EndpointName=cloud.outputs["EndpointName"], ContentType="text/csv", Body=body, **kwargs)


def test_endpoint_scores_like_the_in_memory_model(cloud, booster):
    response = invoke(cloud, csv(ROWS), Accept="text/csv")
    text = response["Body"].read().decode()
    assert response["ContentType"] == "text/csv" and response["InvokedProductionVariant"] == "Primary"
    scores = [float(v) for v in text.strip().split("\n")]  # one score per line
    assert np.allclose(scores, booster.predict(xgboost.DMatrix(ROWS)), rtol=0, atol=1e-7)


def test_target_variant_and_json_accept(cloud, booster):
    response = invoke(cloud, csv(ROWS[:2]), TargetVariant="Shadow", Accept="application/json")
    assert response["InvokedProductionVariant"] == "Shadow"
    body = json.loads(response["Body"].read())
    assert [round(p["score"], 6) for p in body["predictions"]] == [
        round(float(s), 6) for s in booster.predict(xgboost.DMatrix(ROWS[:2]))]


def test_model_loading_is_shared_with_the_container_class(tmp_path, booster):
    path = tmp_path / "model.tar.gz"
    path.write_bytes(model_tarball(booster))
    container = XGBoostContainer.from_model_tarball(path)
    assert np.array_equal(container.predict(ROWS), booster.predict(xgboost.DMatrix(ROWS)))


def test_injected_throttling_then_recovery(cloud):
    cloud.set_model_fault(error="ThrottlingException", count=2)
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            invoke(cloud, csv(ROWS[:1]))
        assert caught.value.response["Error"]["Code"] == "ThrottlingException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert invoke(cloud, csv(ROWS[:1]))["Body"].read()


def test_injected_model_error_and_service_unavailable_through_the_control_api(cloud):
    def control(method, body=None):
        request = urllib.request.Request(cloud.endpoint_url + "/_localcloud/sagemaker/faults", method=method,
                                         data=json.dumps(body).encode() if body else None,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    assert control("POST", {"endpoint": cloud.outputs["EndpointName"], "count": 1, "error": "ModelError"})["faults"]
    with pytest.raises(ClientError) as caught:
        invoke(cloud, csv(ROWS[:1]))
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError" and error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400 and "LogStreamArn" in error
    control("POST", {"endpoint": "*", "count": 5, "error": "ServiceUnavailable"})
    with pytest.raises(ClientError) as caught:
        invoke(cloud, csv(ROWS[:1]))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert control("DELETE") == {"faults": []}
    assert invoke(cloud, csv(ROWS[:1]))["Body"].read()


def test_bad_input_is_a_model_error_and_unknown_endpoint_a_validation_error(cloud):
    with pytest.raises(ClientError) as caught:
        invoke(cloud, b"1.0,abc,2.0")
    assert caught.value.response["Error"]["Code"] == "ModelError"
    assert caught.value.response["OriginalStatusCode"] == 415
    with pytest.raises(ClientError) as caught:
        aws_client(cloud, "sagemaker-runtime").invoke_endpoint(EndpointName="nope", ContentType="text/csv",
                                                               Body=b"1,2,3")
    assert caught.value.response["Error"]["Code"] == "ValidationError"


def test_endpoint_is_also_in_moto_control_plane(cloud):
    described = aws_client(cloud, "sagemaker").describe_endpoint(EndpointName=cloud.outputs["EndpointName"])
    assert described["EndpointName"] == cloud.outputs["EndpointName"]
