"""Synthesizing the CDK app in the infra tests: a placeholder model artifact, the Synth record (imported by name: a
module of its own, not conftest)."""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parents[2]


def write_placeholder_artifact(path: Path, feature_set: str = "v1") -> Path:
    """A model.tar.gz with the layout SageMaker's XGBoost container expects (one file, xgboost-model): a one-tree
    booster that declares ``feature_set`` as train.py's models do (the stack checks it at synth)."""
    import xgboost

    path.parent.mkdir(parents=True, exist_ok=True)
    width = 15 if feature_set == "v1" else 25
    booster = xgboost.train({"nthread": 1}, xgboost.DMatrix([[0.0] * width, [1.0] * width], label=[0, 1]), 1)
    booster.set_attr(feature_set=feature_set)
    data = bytes(booster.save_raw("json"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path


@dataclass
class Synth:
    """One synthesized stack: the app objects, the cloud assembly directory and the template."""
    app: Any
    stack: Any
    outdir: Path
    template: dict
    artifact: Path
    _assertions: Any = field(default=None, repr=False)

    @property
    def config(self):
        return self.stack.config

    @property
    def resources(self) -> dict[str, dict]:
        return self.template["Resources"]

    @property
    def assertions(self):
        """aws_cdk.assertions.Template of the synthesized template (built on first use)."""
        if self._assertions is None:
            from aws_cdk.assertions import Template
            self._assertions = Template.from_json(self.template)
        return self._assertions

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == resource_type}

    def logical_id(self, prefix: str, resource_type: str) -> str:
        """The one resource of ``resource_type`` whose logical id is ``prefix`` + an optional 8-hex-digit hash."""
        found = [lid for lid, r in self.resources.items()
                 if r["Type"] == resource_type and re.fullmatch(re.escape(prefix) + r"([0-9A-F]{8})?", lid)]
        assert len(found) == 1, f"expected one {resource_type} named {prefix}*, found {found}"
        return found[0]

    def props(self, prefix: str, resource_type: str) -> dict:
        return self.resources[self.logical_id(prefix, resource_type)].get("Properties", {})

    def function(self, function_id: str) -> dict:
        return self.props(function_id, "AWS::Lambda::Function")

    def policy_statements(self, role_prefix: str) -> list[dict]:
        """Statements of the inline policies attached to the role whose logical id starts with ``role_prefix``."""
        role = self.logical_id(role_prefix, "AWS::IAM::Role")
        statements = []
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
        return statements


def synthesize(outdir: Path, artifact: Path, **kwargs) -> Synth:
    from app import build_app

    app, stack = build_app(outdir=str(outdir), overrides={"modelArtifact": str(artifact)}, **kwargs)
    app.synth()
    template = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
    return Synth(app=app, stack=stack, outdir=outdir, template=template, artifact=artifact)
