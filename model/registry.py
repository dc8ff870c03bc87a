"""Versioned model artifacts in S3 with a manifest, promotion (new SageMaker Model + EndpointConfig +
UpdateEndpoint) and rollback. Plain boto3: the same code runs against AWS and the embedded local cloud
(scripts/promote.py is the command line).

Layout in the artifacts bucket:
    models/<version>/model.tar.gz
    models/manifest.json   {"versions": {<version>: {kind, sha256, s3_uri, size, metrics, feature_set,
                            created_at}}, "live": {<variant>: <version>}, "history": [{action, at, variant,
                            version, previous_version, endpoint_config, previous_endpoint_config}]}
The live variants are also written to STATE_TABLE item "model" (pipeline/variants.py): invoke_model records the
promoted version with each prediction and monitor_drift reads the promoted model's baseline.

Both endpoint layouts of the stack (infra/stack.py): instance mode, the variants are production variants of one
endpoint; serverless mode, each variant has its own endpoint (Serverless Inference allows one production variant per
endpoint). ``variants`` (the stack's ModelVariants output, [{name, weight, endpoint, ...}]) says which endpoint
serves which variant; a promotion or rollback updates only the endpoint of the variant it changes. Without
``variants``, every variant is taken to be on ``endpoint`` (its production variants).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_KEY = "models/manifest.json"   # = functions/pipeline/models.py MANIFEST_KEY (GET /models reads it)
_NAME_RE = re.compile(r"[^a-zA-Z0-9-]+")


class PromotionError(Exception):
    pass


def artifact_info(path: Path) -> dict:
    """kind, metrics and feature set read from the artifact itself."""
    data = Path(path).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        names = archive.getnames()
        if "model.json" in names and "code/inference.py" in names:
            config = json.loads(_member(archive, "model.json"))
            return {"kind": "pytorch", "metrics": config.get("metrics", {}), "feature_set": config.get("feature_set")}
        if "xgboost-model" in names:
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(bytearray(_member(archive, "xgboost-model")))
            return {"kind": "xgboost", "metrics": json.loads(booster.attr("metrics") or "{}"),
                    "feature_set": booster.attr("feature_set")}
    raise PromotionError(f"{path}: neither a SageMaker XGBoost nor a PyTorch artifact (files {names})")


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)  # None for a directory or link entry
    if member is None:
        raise PromotionError(f"{name} in the artifact is not a regular file")
    return member.read()


def read_manifest(s3, bucket: str) -> dict:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=MANIFEST_KEY)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return {"versions": {}, "live": {}, "history": []}


def write_manifest(s3, bucket: str, manifest: dict) -> None:
    s3.put_object(Bucket=bucket, Key=MANIFEST_KEY, Body=json.dumps(manifest, indent=2).encode(),
                  ContentType="application/json")


def upload(s3, bucket: str, path: Path, version: str) -> dict:
    """Upload an artifact as ``version`` (idempotent for the same bytes; a different artifact under an existing
    version is refused)."""
    data = Path(path).read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    manifest = read_manifest(s3, bucket)
    known = manifest["versions"].get(version)
    if known and known["sha256"] != sha256:
        raise PromotionError(f"version {version} already exists with another artifact (sha256 {known['sha256']})")
    if known:
        return known
    key = f"models/{version}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    entry = {"version": version, **artifact_info(path), "sha256": sha256, "size": len(data),
             "s3_uri": f"s3://{bucket}/{key}", "created_at": time.time()}
    manifest["versions"][version] = entry
    write_manifest(s3, bucket, manifest)
    return entry


def _image(kind: str, region: str, current_models: list[dict]) -> str:
    """The image of a deployed model of the same kind, else the stack's image for the region (cdk.json tags)."""
    from infra.images import image_uri, kind_of_image

    for model in current_models:
        image = model["PrimaryContainer"]["Image"]
        if kind_of_image(image) == kind:
            return image
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    tag = context["pytorchImageTag"] if kind == "pytorch" else context["xgboostImageTag"]
    return image_uri(kind, region, tag)


def _variant_fields(v: dict) -> dict:
    keys = ("VariantName", "ModelName", "InitialInstanceCount", "InstanceType", "InitialVariantWeight",
            "ServerlessConfig")
    return {k: v[k] for k in keys if k in v}


def layout(sm, endpoint: str, variants: list[dict] | None = None) -> list[dict]:
    """[{name, weight, endpoint}] of every variant: from ``variants`` (the stack's ModelVariants), else the production
    variants of ``endpoint``."""
    if variants:
        return [{"name": str(v["name"]), "weight": float(v.get("weight", 1.0)), "endpoint": v.get("endpoint") or endpoint}
                for v in variants]
    config = sm.describe_endpoint_config(EndpointConfigName=sm.describe_endpoint(EndpointName=endpoint)[
        "EndpointConfigName"])
    return [{"name": v["VariantName"], "weight": float(v.get("InitialVariantWeight", 1.0)), "endpoint": endpoint}
            for v in config["ProductionVariants"]]


def _endpoint_of(variants: list[dict], variant: str | None) -> tuple[str, str]:
    """(variant, its endpoint); no variant given: the first (the stack's primary)."""
    target = variant or variants[0]["name"]
    for v in variants:
        if v["name"] == target:
            return target, v["endpoint"]
    raise PromotionError(f"no variant {target} (variants: {', '.join(v['name'] for v in variants)})")


def _record_live(ddb, state_table: str | None, sm, variants: list[dict], manifest: dict,
                 configs: dict[str, str] | None = None) -> list[dict]:
    """STATE_TABLE "model": every variant with its endpoint, weight, kind, live version and artifact, read from the
    endpoint configs the endpoints serve (``configs``: endpoint -> config just switched to). The weight of a variant
    that shares its endpoint is the endpoint config's (the live split); a variant alone on its endpoint keeps the
    stack's A/B weight (its production variant's weight is 1 by necessity)."""
    from infra.images import kind_of_image

    configs = dict(configs or {})
    sharing: dict[str, int] = {}
    for v in variants:
        sharing[v["endpoint"]] = sharing.get(v["endpoint"], 0) + 1
    described: dict[str, dict] = {}
    live = []
    for v in variants:
        endpoint = v["endpoint"]
        if endpoint not in described:
            name = configs.get(endpoint) or sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
            described[endpoint] = {"name": name, **sm.describe_endpoint_config(EndpointConfigName=name)}
        production = described[endpoint]["ProductionVariants"]
        match = next((p for p in production if p["VariantName"] == v["name"]), None)
        if match is None and len(production) == 1:
            match = production[0]
        if match is None:
            raise PromotionError(f"endpoint {endpoint} ({described[endpoint]['name']}) has no variant {v['name']}")
        model = sm.describe_model(ModelName=match["ModelName"])["PrimaryContainer"]
        env = model.get("Environment", {})
        weight = float(match.get("InitialVariantWeight", 1.0)) if sharing[endpoint] > 1 else float(v["weight"])
        live.append({"name": v["name"], "weight": weight, "kind": kind_of_image(model["Image"]) or "xgboost",
                     "model_version": manifest["live"].get(v["name"]) or env.get("MODEL_VERSION", ""),
                     "model_data_url": model["ModelDataUrl"], "endpoint": endpoint,
                     "endpoint_config": described[endpoint]["name"]})
    if state_table:
        from decimal import Decimal

        ddb.put_item(TableName=state_table, Item={
            "pk": {"S": "model"}, "endpoint_config": {"S": live[0]["endpoint_config"]},
            "updated_at": {"N": repr(time.time())},
            "variants": {"L": [{"M": {"name": {"S": v["name"]}, "weight": {"N": str(Decimal(repr(v["weight"])))},
                                      "kind": {"S": v["kind"]}, "model_version": {"S": v["model_version"]},
                                      "model_data_url": {"S": v["model_data_url"]},
                                      "endpoint": {"S": v["endpoint"]}}} for v in live]}})
    return live


def _wait(sm, endpoint: str) -> None:
    sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 15, "MaxAttempts": 80})


def promote(*, sm, s3, ddb, bucket: str, endpoint: str, version: str, variant: str | None = None,
            state_table: str | None = None, region: str = "us-east-1", wait: bool = True,
            variants: list[dict] | None = None) -> dict:
    """Serve ``version`` on ``variant`` (default: the first): a new Model and a new EndpointConfig for the endpoint
    serving that variant (a copy of its current config with that variant's model replaced), then UpdateEndpoint."""
    manifest = read_manifest(s3, bucket)
    entry = manifest["versions"].get(version)
    if entry is None:
        raise PromotionError(f"version {version} is not in s3://{bucket}/{MANIFEST_KEY}: upload it first")
    all_variants = layout(sm, endpoint, variants)
    target, target_endpoint = _endpoint_of(all_variants, variant)
    current_name = sm.describe_endpoint(EndpointName=target_endpoint)["EndpointConfigName"]
    current = [_variant_fields(v) for v in
               sm.describe_endpoint_config(EndpointConfigName=current_name)["ProductionVariants"]]
    names = [v["VariantName"] for v in current]
    if target not in names:
        if len(current) == 1 and variants:     # a serverless endpoint of one variant: its production variant
            target_variant_name = names[0]
        else:
            raise PromotionError(f"endpoint {target_endpoint} has no variant {target}")
    else:
        target_variant_name = target
    models = [sm.describe_model(ModelName=v["ModelName"]) for v in current]
    role = next(m["ExecutionRoleArn"] for m, v in zip(models, current) if v["VariantName"] == target_variant_name)
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + f"{int(time.time() * 1000) % 1000:03d}"
    base = _NAME_RE.sub("-", f"{target_endpoint[:24]}-{version[:16]}").strip("-")
    model_name = f"{base}-{stamp}"[:63]
    environment = {"MODEL_VERSION": version, "FEATURE_SET": entry.get("feature_set") or "v1"}
    if entry["kind"] == "pytorch":
        environment.update(SAGEMAKER_PROGRAM="inference.py", SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="text/csv")
    sm.create_model(ModelName=model_name, ExecutionRoleArn=role, PrimaryContainer={
        "Image": _image(entry["kind"], region, models), "ModelDataUrl": entry["s3_uri"], "Mode": "SingleModel",
        "Environment": environment})
    new_variants = [dict(v, ModelName=model_name) if v["VariantName"] == target_variant_name else v for v in current]
    config_name = f"{_NAME_RE.sub('-', target_endpoint[:40]).strip('-')}-{stamp}"[:63]
    sm.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=new_variants)
    sm.update_endpoint(EndpointName=target_endpoint, EndpointConfigName=config_name)
    if wait:
        _wait(sm, target_endpoint)
    previous_version = manifest["live"].get(target)
    manifest["live"][target] = version
    record = {"action": "promote", "at": time.time(), "variant": target, "version": version,
              "previous_version": previous_version, "endpoint": target_endpoint, "endpoint_config": config_name,
              "previous_endpoint_config": current_name, "model": model_name}
    manifest["history"].append(record)
    write_manifest(s3, bucket, manifest)
    record["live"] = _record_live(ddb, state_table, sm, all_variants, manifest, {target_endpoint: config_name})
    return record


def rollback(*, sm, s3, ddb, bucket: str, endpoint: str, state_table: str | None = None, wait: bool = True,
             variants: list[dict] | None = None) -> dict:
    """Undo the latest promotion not yet rolled back: UpdateEndpoint of the endpoint it changed back to the endpoint
    config it replaced."""
    manifest = read_manifest(s3, bucket)
    undone = {h["undoes"] for h in manifest["history"] if h["action"] == "rollback"}
    candidates = [(i, h) for i, h in enumerate(manifest["history"]) if h["action"] == "promote" and i not in undone]
    if not candidates:
        raise PromotionError("nothing to roll back: no promotion in the manifest history")
    index, last = candidates[-1]
    all_variants = layout(sm, endpoint, variants)
    target_endpoint = last.get("endpoint") or endpoint
    current_name = sm.describe_endpoint(EndpointName=target_endpoint)["EndpointConfigName"]
    if current_name != last["endpoint_config"]:
        raise PromotionError(f"endpoint {target_endpoint} serves {current_name}, not {last['endpoint_config']} (the "
                             "latest promotion): changed outside this tool, refusing to roll back")
    sm.update_endpoint(EndpointName=target_endpoint, EndpointConfigName=last["previous_endpoint_config"])
    if wait:
        _wait(sm, target_endpoint)
    if last["previous_version"]:
        manifest["live"][last["variant"]] = last["previous_version"]
    else:
        manifest["live"].pop(last["variant"], None)
    record = {"action": "rollback", "at": time.time(), "undoes": index, "variant": last["variant"],
              "version": last["previous_version"], "previous_version": last["version"], "endpoint": target_endpoint,
              "endpoint_config": last["previous_endpoint_config"], "previous_endpoint_config": current_name}
    manifest["history"].append(record)
    write_manifest(s3, bucket, manifest)
    record["live"] = _record_live(ddb, state_table, sm, all_variants, manifest,
                                  {target_endpoint: last["previous_endpoint_config"]})
    return record


def list_versions(s3, bucket: str, variants: list[dict] | None = None) -> list[dict]:
    """The registered versions (kind, feature set, metrics, created time) and which variants serve them: the
    manifest's live map over the stack's variants (``variants``: its ModelVariants output). The rows are built by
    the code behind GET /models (functions/pipeline/models.py), so both show the same thing."""
    import sys

    functions = str(ROOT / "functions")
    if functions not in sys.path:
        sys.path.append(functions)
    from pipeline.models import version_rows

    manifest = read_manifest(s3, bucket)
    live = [dict(v, model_version=manifest["live"].get(v["name"]) or v.get("model_version", ""))
            for v in variants or []]
    live += [{"name": name, "model_version": version} for name, version in manifest["live"].items()
             if name not in {v["name"] for v in live}]
    return version_rows(manifest, live)


def status(sm, s3, bucket: str, endpoint: str, variants: list[dict] | None = None) -> dict:
    """The manifest and the endpoint config each variant's endpoint serves."""
    return read_manifest(s3, bucket) | {"endpoints": {
        v["name"]: {"endpoint": v["endpoint"],
                    "endpoint_config": sm.describe_endpoint(EndpointName=v["endpoint"])["EndpointConfigName"]}
        for v in layout(sm, endpoint, variants)}}
