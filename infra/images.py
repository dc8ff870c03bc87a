"""Container images of the two model kinds, per region (no AWS call, no sagemaker SDK: it weighs ~1 GB).

Used by the stack (a CfnMapping per kind) and by scripts/promote.py (image of a promoted version), so both name the
same image for a region.
"""
from __future__ import annotations

# Registry accounts of the SageMaker built-in XGBoost container (repository "sagemaker-xgboost", versions 0.90-1 and
# later), per region. Source: the SageMaker Python SDK, src/sagemaker/image_uri_config/xgboost.json.
XGBOOST_REGISTRIES = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-south-2": "628508329040", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941", "ap-southeast-4": "106583098589", "ca-central-1": "341280168497",
    "ca-west-1": "190319476487", "eu-central-1": "492215442770", "eu-central-2": "680994064768",
    "eu-north-1": "662702820516", "eu-south-1": "978288397137", "eu-south-2": "104374241257",
    "eu-west-1": "141502667606", "eu-west-2": "764974769150", "eu-west-3": "659782779980",
    "il-central-1": "898809789911", "me-central-1": "272398656194", "me-south-1": "801668240914",
    "sa-east-1": "737474898029", "us-east-1": "683313688378", "us-east-2": "257758044811",
    "us-west-1": "746614075791", "us-west-2": "246618743249",
}
XGBOOST_REPOSITORY = "sagemaker-xgboost"

# AWS Deep Learning Containers registry accounts (repository "pytorch-inference"), commercial regions. Source: the
# SageMaker Python SDK's image_uri_config/pytorch.json "inference" registries (same accounts as the DLC
# available_images list): most regions use 763104351884, opt-in regions their own account.
PYTORCH_REGISTRIES = {
    "af-south-1": "626614931356", "ap-east-1": "871362719292", "ap-northeast-1": "763104351884",
    "ap-northeast-2": "763104351884", "ap-northeast-3": "364406365360", "ap-south-1": "763104351884",
    "ap-south-2": "772153158452", "ap-southeast-1": "763104351884", "ap-southeast-2": "763104351884",
    "ap-southeast-3": "907027046896", "ap-southeast-4": "457447274322", "ca-central-1": "763104351884",
    "ca-west-1": "204538143572", "eu-central-1": "763104351884", "eu-central-2": "380420809688",
    "eu-north-1": "763104351884", "eu-south-1": "692866216735", "eu-south-2": "503227376785",
    "eu-west-1": "763104351884", "eu-west-2": "763104351884", "eu-west-3": "763104351884",
    "il-central-1": "780543022126", "me-central-1": "914824155844", "me-south-1": "217643126080",
    "sa-east-1": "763104351884", "us-east-1": "763104351884", "us-east-2": "763104351884",
    "us-west-1": "763104351884", "us-west-2": "763104351884",
}
PYTORCH_REPOSITORY = "pytorch-inference"

KINDS = ("xgboost", "pytorch")
REGISTRIES = {"xgboost": XGBOOST_REGISTRIES, "pytorch": PYTORCH_REGISTRIES}
REPOSITORIES = {"xgboost": XGBOOST_REPOSITORY, "pytorch": PYTORCH_REPOSITORY}


def image_uri(kind: str, region: str, tag: str, url_suffix: str = "amazonaws.com") -> str:
    """e.g. image_uri("pytorch", "eu-west-1", "2.6.0-cpu-py312")."""
    if kind not in REGISTRIES:
        raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    account = REGISTRIES[kind].get(region)
    if account is None:
        raise ValueError(f"no {kind} container registry known for region {region}")
    return f"{account}.dkr.ecr.{region}.{url_suffix}/{REPOSITORIES[kind]}:{tag}"


def kind_of_image(image: str) -> str | None:
    """The model kind an image URI serves (None if neither)."""
    for kind, repository in REPOSITORIES.items():
        if f"/{repository}:" in image:
            return kind
    return None
