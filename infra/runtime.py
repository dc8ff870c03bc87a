"""The Lambda runtime, the ML image base and the public Powertools layer: pinned together, in one place.

Every zip function runs on ``LAMBDA_RUNTIME`` (python3.12, Amazon Linux 2023: glibc 2.34, so the manylinux_2_28
wheels of xgboost 3.x / numpy / scipy / scikit-learn install as binaries) and the two ML functions run from an image
built on ``ML_IMAGE_BASE`` (the Lambda python3.12 base image, same OS and Python). Sources: AWS Lambda Developer
Guide, "Lambda runtimes" (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html): python3.12 runs on
Amazon Linux 2023; python3.11 images are Amazon Linux 2.

Powertools layer: the zip functions get Powertools from its public layer, which must carry the same release as the
``aws-lambda-powertools`` pin of requirements.txt (the tests and the local cloud run that pin). The layer's version
number is a per-layer counter, not the release number, and the Powertools docs page that lists it has lagged
releases (powertools-lambda-python issues #6859, #7650). The release -> layer mapping Powertools publishes is a
public SSM parameter per runtime, architecture and release:
``/aws/service/powertools/python/{arch}/{python}/{release}`` -> the layer ARN of that release in that region
(Powertools docs, "Lambda Layer" / SSM parameters; workflow .github/workflows/update_ssm.yml of
aws-powertools/powertools-lambda-python). So by default (cdk.json ``"powertoolsLayerVersion": "ssm"``) the stack
names the layer through that parameter for the pinned release, resolved by CloudFormation at deploy time in the
stack's region: the layer and the pin agree by construction.

A fixed layer version number can still be configured, but only one listed in ``KNOWN_LAYER_VERSIONS`` for the pinned
release (each entry with where it was verified): config validation refuses any other number, so the pin and the
layer cannot drift apart silently.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYTHON_VERSION = "3.12"
LAMBDA_RUNTIME = "python3.12"                       # aws_lambda.Runtime.PYTHON_3_12
ARCHITECTURE = "x86_64"
ML_IMAGE_BASE = f"public.ecr.aws/lambda/python:{PYTHON_VERSION}"
# The ML image's platform for binary wheels: Amazon Linux 2023 ships glibc 2.34.
ML_WHEEL_PLATFORM = "manylinux_2_34_x86_64"

POWERTOOLS_ACCOUNT = "017000801446"   # publisher of the public Powertools for AWS Lambda (Python) layers
POWERTOOLS_PACKAGE = "aws-lambda-powertools"
POWERTOOLS_SSM = "ssm"                # powertoolsLayerVersion value: resolve the pinned release's layer at deploy

# Release -> layer version of AWSLambdaPowertoolsPythonV3-<python>-x86_64, only entries verified from a Powertools
# source. (The docs list one number for all Python versions of a release; regions have been skewed before, issue
# #3494, which is one more reason the SSM parameter, read in the stack's own region, is the default.)
KNOWN_LAYER_VERSIONS: dict[str, int] = {
    # powertools-lambda-python issue #7689 (2025-11): "Lambda layer exists:
    # arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-x86_64:27 (created Nov 13)"
    # for release 3.23.0, the SSM parameter .../latest pointing to it. (27 was this project's earlier value.)
    "3.23.0": 27,
}


def layer_name(python_version: str = PYTHON_VERSION, architecture: str = ARCHITECTURE) -> str:
    """e.g. AWSLambdaPowertoolsPythonV3-python312-x86_64."""
    return f"AWSLambdaPowertoolsPythonV3-python{python_version.replace('.', '')}-{architecture}"


def ssm_parameter(release: str, python_version: str = PYTHON_VERSION, architecture: str = ARCHITECTURE) -> str:
    """The public SSM parameter whose value is the layer ARN of ``release`` (in the region it is read in)."""
    return f"/aws/service/powertools/python/{architecture}/python{python_version}/{release}"


def pinned(package: str, requirements: Path = ROOT / "requirements.txt") -> str:
    """The ``==`` pin of ``package`` in a requirements file (extras allowed)."""
    pattern = re.compile(rf"^{re.escape(package)}(\[[^\]]*\])?==([^\s#;]+)", re.IGNORECASE)
    for line in requirements.read_text().splitlines():
        match = pattern.match(line.strip())
        if match:
            return match.group(2)
    raise LookupError(f"{requirements.name} has no {package}==<version> pin")


def powertools_release() -> str:
    return pinned(POWERTOOLS_PACKAGE)


def check_layer_version(value: int | str, release: str) -> str | None:
    """None if ``value`` (cdk.json powertoolsLayerVersion) serves ``release``, else what to change."""
    if value == POWERTOOLS_SSM:
        return None
    known = KNOWN_LAYER_VERSIONS.get(release)
    others = sorted(r for r, v in KNOWN_LAYER_VERSIONS.items() if v == value)
    if known == value:
        return None
    what = (f"layer version {value} is the public layer of {POWERTOOLS_PACKAGE} {', '.join(others)}" if others
            else f"layer version {value} is not a verified layer of {POWERTOOLS_PACKAGE} {release}")
    return (f"powertoolsLayerVersion: {what}, but requirements.txt pins {release}. Set it to \"{POWERTOOLS_SSM}\" "
            f"(the stack then resolves the {release} layer from the public SSM parameter {ssm_parameter(release)} "
            f"at deploy time) or to the layer version of {release} after adding it, with its source, to "
            "KNOWN_LAYER_VERSIONS in infra/runtime.py")
