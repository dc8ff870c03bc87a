"""End-to-end tests: the synthesized stack deployed into the embedded local cloud, driven over HTTP."""
import os
import subprocess
import sys

import boto3
import pytest
from e2ekit import MODEL, ROOT, TORCH_MODEL, Api


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory):
    missing = [kind for kind, path in (("xgboost", MODEL), ("pytorch", TORCH_MODEL)) if not path.exists()]
    if missing:  # `make test` trains them; a bare pytest run gets small ones
        subprocess.run([sys.executable, "model/train.py", "--users", "100", "--hours", "6", "--kinds",
                        ",".join(missing)], cwd=ROOT, check=True)
    out = tmp_path_factory.mktemp("cdk.out")
    env = dict(os.environ, CDK_OUTDIR=str(out), JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def cloud(cdk_out, tmp_path_factory):
    from localcloud import LocalCloud

    with LocalCloud(cdk_out=str(cdk_out), state_dir=str(tmp_path_factory.mktemp("state")), api_port=0) as c:
        c.deploy()
        yield c


@pytest.fixture(scope="session")
def api(cloud):
    return Api(cloud.api_url)


@pytest.fixture(scope="session")
def resources(cloud):
    """Names of the deployed resources, read from the deployed API function's environment."""
    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                    region_name="us-east-1")
    functions = session.client("lambda", endpoint_url=cloud.endpoint_url).list_functions()["Functions"]
    # this stack's function: moto's state is per process, and other tests deploy other stacks into it
    env = next(f for f in functions if f["FunctionName"].startswith(f"{cloud.stack.stack_name}-")
               and "ApiFunction" in f["FunctionName"])["Environment"]["Variables"]
    dynamodb = session.resource("dynamodb", endpoint_url=cloud.endpoint_url)
    return {"env": env, "session": session, "endpoint": cloud.endpoint_url,
            "client": lambda name: session.client(name, endpoint_url=cloud.endpoint_url),
            "table": lambda env_name: dynamodb.Table(env[env_name])}   # a table by its env variable: "COST_TABLE"
