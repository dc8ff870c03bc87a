"""LocalCloud as a whole: deploying a template (conditions, outputs, image functions, tables), lifecycle, errors."""
import json
import os
import socket
import urllib.request

import pytest

from cloudkit import FakeCdkOut, aws_client, wait_for
from localcloud import LocalCloud
from localcloud.errors import LocalCloudError

HANDLERS = '''
import os


def env(event, context):
    return {k: v for k, v in os.environ.items() if k in ("MODEL_DIR", "STAGE", "FROM_TEMPLATE")}


def ping(event, context):
    return {"pong": event}
'''


def build(root, stack="CloudTestStack") -> FakeCdkOut:
    out = FakeCdkOut(root / "cdk.out", stack=stack)
    code = out.code_asset({"app.py": HANDLERS})
    out.parameters["Stage"] = {"Type": "String", "Default": "dev"}
    out.conditions["IsProd"] = {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    out.add("ProdOnlyQueue", "AWS::SQS::Queue", Condition="IsProd")
    out.add("EventsTable", "AWS::DynamoDB::GlobalTable", {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "user_id", "AttributeType": "S"},
                                 {"AttributeName": "ts", "AttributeType": "N"}],
        "BillingMode": "PAY_PER_REQUEST", "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
        "GlobalSecondaryIndexes": [{"IndexName": "by_user", "Projection": {"ProjectionType": "ALL"},
                                    "KeySchema": [{"AttributeName": "user_id", "KeyType": "HASH"},
                                                  {"AttributeName": "ts", "KeyType": "RANGE"}]}],
        "Replicas": [{"Region": {"Ref": "AWS::Region"}}]})
    out.add("Events", "AWS::Kinesis::Stream", {"StreamModeDetails": {"StreamMode": "ON_DEMAND"}})
    out.add("Topic", "AWS::SNS::Topic")
    out.add("Config", "AWS::SSM::Parameter", {"Type": "String", "Value": {"Ref": "Topic"}})
    out.add("Key", "AWS::KMS::Key", {"KeyPolicy": {}})
    out.add("Schedule", "AWS::Events::Rule", {"ScheduleExpression": "rate(1 hour)", "State": "ENABLED",
                                              "Targets": [{"Arn": {"Fn::GetAtt": ["PingFunction", "Arn"]},
                                                           "Id": "T"}]})
    out.function("PingFunction", "app.ping", code, {"KEY_ARN": {"Fn::GetAtt": ["Key", "Arn"]}})
    image = out.image_asset({
        "Dockerfile": "FROM public.ecr.aws/lambda/python:3.11\nENV MODEL_DIR=/opt/model STAGE=image\n"
                      "COPY src ${LAMBDA_TASK_ROOT}\nCMD [\"app.env\"]\n",
        "src/app.py": HANDLERS})
    out.add("ImageFunctionRole", "AWS::IAM::Role", {"AssumeRolePolicyDocument": {}})
    out.add("ImageFunction", "AWS::Lambda::Function", {
        "Code": {"ImageUri": {"Fn::Sub": image}}, "PackageType": "Image", "Timeout": 10,
        "Role": {"Fn::GetAtt": ["ImageFunctionRole", "Arn"]},
        "Environment": {"Variables": {"STAGE": "template", "FROM_TEMPLATE": {"Ref": "Stage"}}}})
    out.output("TableArn", {"Fn::GetAtt": ["EventsTable", "Arn"]})
    out.output("Summary", {"Fn::Sub": "${EventsTable}|${Events}|${AWS::StackName}"})
    out.output("QueueIfProd", {"Fn::If": ["IsProd", {"Ref": "ProdOnlyQueue"}, "none"]})
    out.write()
    return out


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("cloud")
    out = build(root)
    with LocalCloud(cdk_out=out.root, state_dir=root / "state", api_port=0, run_schedules=False) as c:
        c.deploy()
        yield c


def test_outputs_resources_and_conditions(cloud):
    table = cloud.resources["EventsTable"]
    assert table.startswith("CloudTestStack-EventsTable-")
    assert cloud.outputs["TableArn"] == f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
    assert cloud.outputs["Summary"] == f"{table}|{cloud.resources['Events']}|CloudTestStack"
    assert cloud.outputs["QueueIfProd"] == "none" and "ProdOnlyQueue" not in cloud.resources
    assert cloud.deployer.resources["Key"].status == "skipped"
    assert "Key" in cloud.deployer.skipped
    assert cloud.deploy() is cloud  # idempotent


def test_tables_streams_and_parameters_exist_in_moto(cloud):
    dynamodb = aws_client(cloud, "dynamodb")
    description = dynamodb.describe_table(TableName=cloud.resources["EventsTable"])["Table"]
    assert [i["IndexName"] for i in description["GlobalSecondaryIndexes"]] == ["by_user"]
    ttl = dynamodb.describe_time_to_live(TableName=cloud.resources["EventsTable"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    shards = aws_client(cloud, "kinesis").list_shards(StreamName=cloud.resources["Events"])["Shards"]
    assert len(shards) == 4  # on-demand, as moto models it
    parameter = aws_client(cloud, "ssm").get_parameter(Name=cloud.resources["Config"])["Parameter"]
    assert parameter["Value"] == cloud.resources["Topic"]
    assert aws_client(cloud, "events").put_events(
        Entries=[{"Source": "app", "DetailType": "x", "Detail": "{}"}])["FailedEntryCount"] == 0


def test_container_image_function_runs_from_its_build_context(cloud):
    env = cloud.invoke("ImageFunction", {})
    # Dockerfile ENV applies, the template's environment wins over it, handler from the Dockerfile CMD
    assert env == {"MODEL_DIR": "/opt/model", "STAGE": "template", "FROM_TEMPLATE": "dev"}
    assert cloud.lambda_host.spec("ImageFunction").code_dir.name == "src"


def test_control_api_status(cloud):
    with urllib.request.urlopen(cloud.endpoint_url + "/_localcloud/status") as response:
        status = json.loads(response.read())
    assert status["deployed"] and status["resources"]["PingFunction"] == cloud.resources["PingFunction"]
    assert "Schedule" in status["schedules"]


def test_status_command_prints_a_one_screen_summary_and_details_on_request(cloud, capsys):
    from localcloud.__main__ import main

    cloud.invoke("PingFunction", {"n": 1})
    assert main(["status", "--endpoint-url", cloud.endpoint_url]) == 0
    summary = capsys.readouterr().out
    lines = summary.splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 200   # fits a terminal screen (long names wrap)
    assert lines[0].startswith("stack       CloudTestStack   deployed")
    assert f"HTTP API    {cloud.api_url}" in summary and "--details" in summary
    assert "Ping " in summary and "Schedule rate(1 hour) fired 0" in summary
    assert main(["status", "--details", "--endpoint-url", cloud.endpoint_url]) == 0
    details = json.loads(capsys.readouterr().out)
    assert details["functions"]["PingFunction"]["invocations"] >= 1 and details["resources"]


def test_fault_help_lists_the_error_names(capsys):
    from localcloud.__main__ import main

    with pytest.raises(SystemExit):
        main(["fault", "--help"])
    assert "ModelError" in capsys.readouterr().out


def test_a_second_cloud_in_the_same_process(cloud, tmp_path):
    """State machines reach the functions of every running cloud (moto's executor knows only one port)."""
    out = FakeCdkOut(tmp_path / "cdk.out", stack="SecondStack")
    out.add("MachineRole", "AWS::IAM::Role", {"AssumeRolePolicyDocument": {}})
    out.write()
    ping_arn = cloud.lambda_host.spec("PingFunction").arn
    definition = json.dumps({"StartAt": "Ping", "States": {"Ping": {"Type": "Task", "Resource": ping_arn,
                                                                     "End": True}}})
    sfn = aws_client(cloud, "stepfunctions")
    machine = sfn.create_state_machine(name="cross", definition=definition, type="EXPRESS",
                                       roleArn="arn:aws:iam::123456789012:role/x")["stateMachineArn"]
    with LocalCloud(cdk_out=out.root, state_dir=tmp_path / "state", api_port=0) as second:
        second.deploy()
        assert os.environ["MOTO_PORT"] == str(second.gateway.port)
        arn = sfn.start_execution(stateMachineArn=machine, input='{"n": 1}')["executionArn"]
        done = wait_for(lambda: (lambda d: d if d["status"] != "RUNNING" else None)(
            sfn.describe_execution(executionArn=arn)), what="the cross-cloud execution")
        assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"pong": {"n": 1}}
        with pytest.raises(LocalCloudError, match="already deployed"):
            LocalCloud(cdk_out=build(tmp_path / "again").root, state_dir=tmp_path / "s3", api_port=0).deploy()
    assert os.environ["MOTO_PORT"] == str(cloud.gateway.port)
    assert cloud.invoke("PingFunction", {"still": "up"}) == {"pong": {"still": "up"}}


def test_stop_leaves_no_processes_and_frees_the_ports(tmp_path):
    out = build(tmp_path, stack="StopTestStack")
    cloud = LocalCloud(cdk_out=out.root, state_dir=tmp_path / "state", api_port=0, run_schedules=False)
    with cloud:
        cloud.deploy()
        assert cloud.invoke("PingFunction", 1) == {"pong": 1}
        pool = cloud.lambda_host.pools[cloud.resources["PingFunction"]]
        pids = [w.process.pid for w in pool._idle]
        ports = (cloud.gateway.port, cloud.http_api.server.server_address[1])
        assert pids and (tmp_path / "state" / "localcloud.json").is_file()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert not (tmp_path / "state" / "localcloud.json").exists()


def test_clear_errors_for_missing_cdk_out_and_busy_port(tmp_path):
    with pytest.raises(LocalCloudError, match="make synth"):
        LocalCloud(cdk_out=tmp_path / "missing", state_dir=tmp_path / "s").start()
    out = build(tmp_path, stack="PortTestStack")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LocalCloudError, match=f"127.0.0.1:{port}"):
            LocalCloud(cdk_out=out.root, state_dir=tmp_path / "s", api_port=port).start()
    assert not LocalCloud._active or all(c._started for c in LocalCloud._active)
