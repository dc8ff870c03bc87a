"""Container images of the two model kinds, per region (no AWS call; the sagemaker SDK itself is not imported here).

The region -> registry account maps come from AWS's own image map as shipped in the SageMaker SDK (sagemaker-core's
image_uri_config/xgboost.json and pytorch.json), copied for the deployed versions into infra/image_registries.json by
scripts/update_image_map.py (tests/infra/test_image_registries.py keeps the file in step with the installed
sagemaker-core when it is installed). Used by the stack (a CfnMapping per kind, and a synth-time check of a concrete
region) and by scripts/promote.py (image of a promoted version), so both name the same image for a region.
"""
from __future__ import annotations

import json
from pathlib import Path

REGISTRY_FILE = Path(__file__).resolve().parent / "image_registries.json"
IMAGE_MAP = json.loads(REGISTRY_FILE.read_text())
SOURCE = f"{IMAGE_MAP['source']['package']} {IMAGE_MAP['source']['version']}"

KINDS = ("xgboost", "pytorch")
# SageMaker built-in XGBoost container (repository "sagemaker-xgboost")
XGBOOST_REGISTRIES: dict[str, str] = IMAGE_MAP["xgboost"]["registries"]
XGBOOST_REPOSITORY: str = IMAGE_MAP["xgboost"]["repository"]
# AWS Deep Learning Containers, PyTorch inference (repository "pytorch-inference")
PYTORCH_REGISTRIES: dict[str, str] = IMAGE_MAP["pytorch"]["registries"]
PYTORCH_REPOSITORY: str = IMAGE_MAP["pytorch"]["repository"]
REGISTRIES = {"xgboost": XGBOOST_REGISTRIES, "pytorch": PYTORCH_REGISTRIES}
REPOSITORIES = {"xgboost": XGBOOST_REPOSITORY, "pytorch": PYTORCH_REPOSITORY}
VERSIONS = {kind: IMAGE_MAP[kind]["version"] for kind in KINDS}   # the image versions the map was generated for


def image_version(kind: str, tag: str) -> str:
    """The image version of a tag: "3.0-5" -> "3.0-5", "2.6.0-cpu-py312" -> "2.6.0"."""
    return tag if kind == "xgboost" else tag.split("-")[0]


def region_problem(kind: str, region: str, tag: str) -> str | None:
    """None if the map has ``kind``'s image in ``region``, else what to change."""
    regions = REGISTRIES[kind]
    if region in regions:
        return None
    return (f"region {region}: AWS's image map ({SOURCE}) has no {kind} {image_version(kind, tag)} image "
            f"({REPOSITORIES[kind]}) in {region}; it has {len(regions)} regions: {', '.join(sorted(regions))}. "
            f"Deploy to one of them, or drop the {kind} variants, or update the map "
            "(scripts/update_image_map.py with a newer sagemaker-core)")


def image_uri(kind: str, region: str, tag: str, url_suffix: str | None = None) -> str:
    """e.g. image_uri("pytorch", "eu-west-1", "2.6.0-cpu-py312"). The URL suffix defaults to the region's partition's
    (aws-cn: amazonaws.com.cn; the stack itself uses AWS::URLSuffix)."""
    url_suffix = url_suffix or ("amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com")
    if kind not in REGISTRIES:
        raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    account = REGISTRIES[kind].get(region)
    if account is None:
        raise ValueError(region_problem(kind, region, tag))
    return f"{account}.dkr.ecr.{region}.{url_suffix}/{REPOSITORIES[kind]}:{tag}"


def kind_of_image(image: str) -> str | None:
    """The model kind an image URI serves (None if neither)."""
    for kind, repository in REPOSITORIES.items():
        if f"/{repository}:" in image:
            return kind
    return None
