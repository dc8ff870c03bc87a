"""The intrinsic resolver, dependency order and physical names (no servers)."""
import re

import pytest

from localcloud.assembly import CloudAssembly
from localcloud.deployer import Deployer
from localcloud.errors import LocalCloudError
from localcloud.intrinsics import Resolver, TemplateError, pseudo_parameters, references
from localcloud.naming import physical_name

RESOURCES = {
    "Queue": {"ref": "https://sqs/q", "attrs": {"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "QueueName": "q"}},
    "Fn": {"ref": "stack-Fn-ABC", "attrs": {"Arn": "arn:aws:lambda:us-east-1:123456789012:function:stack-Fn-ABC"}},
}


def resolver(**kwargs) -> Resolver:
    return Resolver(pseudo=pseudo_parameters("us-east-1", "123456789012", "MyStack"),
                    ref=lambda name: RESOURCES[name]["ref"],
                    get_att=lambda name, attr: RESOURCES[name]["attrs"][attr], **kwargs)


def test_refs_pseudo_parameters_and_parameters():
    r = resolver(parameters={"Env": "dev"})
    assert r.resolve({"Ref": "AWS::Region"}) == "us-east-1"
    assert r.resolve({"Ref": "AWS::AccountId"}) == "123456789012"
    assert r.resolve({"Ref": "AWS::Partition"}) == "aws"
    assert r.resolve({"Ref": "AWS::URLSuffix"}) == "amazonaws.com"
    assert r.resolve({"Ref": "AWS::StackName"}) == "MyStack"
    assert r.resolve({"Ref": "Env"}) == "dev"
    assert r.resolve({"Ref": "Queue"}) == "https://sqs/q"


def test_get_att_both_forms():
    r = resolver()
    assert r.resolve({"Fn::GetAtt": ["Queue", "Arn"]}).endswith(":q")
    assert r.resolve({"Fn::GetAtt": "Queue.QueueName"}) == "q"


def test_join_select_split_base64():
    r = resolver()
    assert r.resolve({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", "b"]]}) == "arn:aws:s3:::b"
    assert r.resolve({"Fn::Join": [",", [1, True, "x"]]}) == "1,true,x"
    assert r.resolve({"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}) == "b"
    assert r.resolve({"Fn::Select": ["0", {"Fn::GetAZs": ""}]}) == "us-east-1a"
    assert r.resolve({"Fn::Base64": "hi"}) == "aGk="


def test_sub_string_and_list_forms():
    r = resolver()
    assert r.resolve({"Fn::Sub": "cdk-assets-${AWS::AccountId}-${AWS::Region}"}) == "cdk-assets-123456789012-us-east-1"
    assert r.resolve({"Fn::Sub": "${Fn.Arn}|${Queue}|${!Literal}"}) == (
        "arn:aws:lambda:us-east-1:123456789012:function:stack-Fn-ABC|https://sqs/q|${Literal}")
    assert r.resolve({"Fn::Sub": ["${Name}-${AWS::Region}", {"Name": {"Fn::GetAtt": ["Queue", "QueueName"]}}]}) == \
        "q-us-east-1"


def test_conditions_if_and_no_value():
    r = resolver(parameters={"Env": "prod"}, conditions={
        "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "IsChina": {"Fn::Or": [{"Fn::Equals": [{"Ref": "AWS::Region"}, "cn-north-1"]},
                               {"Fn::Equals": [{"Ref": "AWS::Region"}, "cn-northwest-1"]}]},
        "ProdNotChina": {"Fn::And": [{"Condition": "IsProd"}, {"Fn::Not": [{"Condition": "IsChina"}]}]}})
    assert r.condition("ProdNotChina") is True
    value = {"A": {"Fn::If": ["IsChina", {"Ref": "AWS::NoValue"}, {"EncryptionType": "KMS"}]},
             "B": {"Fn::If": ["IsProd", {"Ref": "AWS::NoValue"}, 1]},
             "L": [1, {"Fn::If": ["IsProd", {"Ref": "AWS::NoValue"}, 2]}, 3]}
    assert r.resolve(value) == {"A": {"EncryptionType": "KMS"}, "L": [1, 3]}


def test_find_in_map_and_errors():
    r = resolver(mappings={"Images": {"us-east-1": {"xgboost": "683313688378"}}})
    assert r.resolve({"Fn::FindInMap": ["Images", {"Ref": "AWS::Region"}, "xgboost"]}) == "683313688378"
    with pytest.raises(TemplateError):
        r.resolve({"Fn::FindInMap": ["Images", "eu-west-1", "xgboost"]})
    with pytest.raises(TemplateError, match="ImportValue"):
        r.resolve({"Fn::ImportValue": "x"})
    with pytest.raises(TemplateError, match="unsupported"):
        r.resolve({"Fn::Cidr": ["10.0.0.0/16", 2, 8]})


def test_references_for_dependency_order():
    ids = frozenset({"Queue", "Fn", "Table"})
    value = {"A": {"Ref": "Queue"}, "B": {"Fn::Sub": "${Fn.Arn}/${AWS::Region}/${!Table}"},
             "C": {"Fn::GetAtt": "Table.Arn"}, "D": {"Ref": "AWS::Region"}}
    assert references(value, ids) == {"Queue", "Fn", "Table"}
    assert references({"Fn::Sub": ["${X}", {"X": "lit"}]}, ids) == set()


def test_deployer_order_and_cycles(fake_cdk_out):
    fake_cdk_out.add("Topic", "AWS::SNS::Topic")
    fake_cdk_out.add("Queue", "AWS::SQS::Queue", {"QueueName": {"Fn::GetAtt": ["Topic", "TopicName"]}})
    fake_cdk_out.add("Param", "AWS::SSM::Parameter", {"Value": {"Ref": "Queue"}}, DependsOn="Topic")
    stack = CloudAssembly(fake_cdk_out.write()).stack()
    order = Deployer(stack, session=None, endpoint_url="", region="us-east-1", account_id="1",
                     work_dir=fake_cdk_out.root, parameters={"BootstrapVersion": "30"}).order()
    assert order.index("Topic") < order.index("Queue") < order.index("Param")

    fake_cdk_out.add("Topic", "AWS::SNS::Topic", {"TopicName": {"Ref": "Param"}})
    stack = CloudAssembly(fake_cdk_out.write()).stack()
    with pytest.raises(TemplateError, match="circular"):
        Deployer(stack, session=None, endpoint_url="", region="us-east-1", account_id="1",
                 work_dir=fake_cdk_out.root, parameters={"BootstrapVersion": "30"}).order()


def test_physical_names_follow_each_service_rules():
    stack = "RealtimeInferenceStack"
    fn = physical_name(stack, "ApiFunctionCE271BD4", "AWS::Lambda::Function")
    assert len(fn) <= 64 and "ApiFunction" in fn and fn.startswith(stack + "-")
    assert fn == physical_name(stack, "ApiFunctionCE271BD4", "AWS::Lambda::Function")  # deterministic
    assert fn != physical_name(stack, "OtherFunction12345678", "AWS::Lambda::Function")
    bucket = physical_name(stack, "ArtifactsBucket2AAC5544", "AWS::S3::Bucket")
    assert re.fullmatch(r"[a-z0-9-]{3,63}", bucket)
    long = physical_name(stack * 3, "A" * 80 + "_x", "AWS::SageMaker::Endpoint")
    assert len(long) <= 63 and "_" not in long
    queue = physical_name(stack, "Dlq", "AWS::SQS::Queue", fifo=True)
    assert queue.endswith(".fifo") and len(queue) <= 80


def test_missing_cdk_out_says_run_make_synth(tmp_path):
    with pytest.raises(LocalCloudError, match="make synth"):
        CloudAssembly(tmp_path / "nothing-here")
