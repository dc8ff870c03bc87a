"""Reading a synthesized CDK cloud assembly (cdk.out): the stack template and its assets.

Everything the local cloud deploys comes from here: the template is found through ``manifest.json`` and the
file/image assets through ``<Stack>.assets.json``. Nothing about the stack is hard-coded.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LocalCloudError


@dataclass
class FileAsset:
    hash: str
    path: Path                 # absolute path of the staged asset (a directory for zip packaging, else a file)
    packaging: str             # "zip" or "file"
    bucket_name: str           # may contain ${AWS::AccountId}/${AWS::Region}
    object_key: str


@dataclass
class ImageAsset:
    hash: str
    directory: Path            # the docker build context staged in cdk.out
    dockerfile: str
    repository_name: str
    image_tag: str


@dataclass
class StackArtifact:
    artifact_id: str
    stack_name: str
    template_path: Path
    template: dict
    files: dict[str, FileAsset] = field(default_factory=dict)     # by hash
    images: dict[str, ImageAsset] = field(default_factory=dict)   # by hash

    def file_asset_for_key(self, object_key: str) -> FileAsset | None:
        for asset in self.files.values():
            if asset.object_key == object_key:
                return asset
        return None

    def image_asset_for_uri(self, image_uri: str) -> ImageAsset | None:
        tag = image_uri.rsplit(":", 1)[-1] if ":" in image_uri.rsplit("/", 1)[-1] else ""
        for asset in self.images.values():
            if tag and asset.image_tag == tag:
                return asset
        return None


class CloudAssembly:
    """A cdk.out directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).resolve()
        manifest_path = self.directory / "manifest.json"
        if not manifest_path.is_file():
            raise LocalCloudError(f"no cloud assembly at {self.directory} (manifest.json is missing): "
                                  "run `make synth` first")
        self.manifest = json.loads(manifest_path.read_text())
        self.artifacts: dict = self.manifest.get("artifacts", {})

    def stack_ids(self) -> list[str]:
        return [k for k, v in self.artifacts.items() if v.get("type") == "aws:cloudformation:stack"]

    def stack(self, name: str | None = None) -> StackArtifact:
        ids = self.stack_ids()
        if not ids:
            raise LocalCloudError(f"{self.directory}/manifest.json lists no CloudFormation stack: run `make synth`")
        if name is None:
            if len(ids) > 1:
                raise LocalCloudError(f"cdk.out holds several stacks {ids}: pick one with stack=...")
            artifact_id = ids[0]
        else:
            matches = [i for i in ids if i == name or self._stack_name(i) == name]
            if not matches:
                raise LocalCloudError(f"stack {name!r} not in cdk.out (stacks: {ids})")
            artifact_id = matches[0]
        artifact = self.artifacts[artifact_id]
        template_path = self.directory / artifact["properties"]["templateFile"]
        if not template_path.is_file():
            raise LocalCloudError(f"template {template_path} is missing: run `make synth` again")
        stack = StackArtifact(artifact_id=artifact_id, stack_name=self._stack_name(artifact_id),
                              template_path=template_path, template=json.loads(template_path.read_text()))
        self._load_assets(artifact_id, stack)
        return stack

    def _stack_name(self, artifact_id: str) -> str:
        return self.artifacts[artifact_id].get("properties", {}).get("stackName") or \
            self.artifacts[artifact_id].get("displayName") or artifact_id

    def _load_assets(self, artifact_id: str, stack: StackArtifact) -> None:
        artifact = self.artifacts[artifact_id]
        manifests = []
        for dep in artifact.get("dependencies", []) + [f"{artifact_id}.assets"]:
            dep_artifact = self.artifacts.get(dep, {})
            if dep_artifact.get("type") == "cdk:asset-manifest":
                manifests.append(self.directory / dep_artifact["properties"]["file"])
        for path in dict.fromkeys(manifests):
            if not path.is_file():
                continue
            data = json.loads(path.read_text())
            for asset_hash, entry in data.get("files", {}).items():
                source = entry.get("source", {})
                if "path" not in source:
                    continue  # executable-sourced assets are not supported locally
                for dest in entry.get("destinations", {}).values():
                    stack.files[asset_hash] = FileAsset(
                        hash=asset_hash, path=self.directory / source["path"],
                        packaging=source.get("packaging", "file"), bucket_name=dest["bucketName"],
                        object_key=dest["objectKey"])
                    break
            for asset_hash, entry in data.get("dockerImages", {}).items():
                source = entry.get("source", {})
                if "directory" not in source:
                    continue
                for dest in entry.get("destinations", {}).values():
                    stack.images[asset_hash] = ImageAsset(
                        hash=asset_hash, directory=self.directory / source["directory"],
                        dockerfile=source.get("dockerFile", "Dockerfile"),
                        repository_name=dest["repositoryName"], image_tag=dest["imageTag"])
                    break


_COPY_RE = re.compile(r"^\s*(?:COPY|ADD)\s+(?:--\S+\s+)*(.+?)\s*$", re.IGNORECASE)


def image_code_directory(asset: ImageAsset) -> tuple[Path, dict[str, str], list[str]]:
    """Where the function code of a container image asset lives, the ENV and the CMD of its Dockerfile.

    The local cloud cannot build images. It runs the handler from the build context, using the Dockerfile only
    to find which directory is copied into ``${LAMBDA_TASK_ROOT}`` (``/var/task``); dependencies come from the
    local Python environment.
    """
    dockerfile = asset.directory / asset.dockerfile
    code_dir = asset.directory
    env: dict[str, str] = {}
    command: list[str] = []
    if dockerfile.is_file():
        for line in dockerfile.read_text().splitlines():
            match = _COPY_RE.match(line)
            if match:
                parts = match.group(1).split()
                target = parts[-1].strip("\"'").rstrip("/") if parts else ""
                if len(parts) == 2 and target in ("${LAMBDA_TASK_ROOT}", "$LAMBDA_TASK_ROOT", "/var/task"):
                    source = parts[0].strip("\"'")
                    candidate = (asset.directory / source).resolve()
                    if candidate.is_dir() and source not in (".", "./"):
                        code_dir = candidate
            stripped = line.strip()
            if stripped.upper().startswith("CMD "):
                body = stripped[4:].strip()
                try:
                    parsed = json.loads(body)
                    command = [str(p) for p in parsed] if isinstance(parsed, list) else [str(parsed)]
                except ValueError:
                    command = body.split()
            if stripped.upper().startswith("ENV "):
                body = stripped[4:].strip()
                if "=" in body.split()[0]:
                    for token in body.split():
                        if "=" in token:
                            key, value = token.split("=", 1)
                            env[key] = value.strip("\"'")
                else:
                    key, _, value = body.partition(" ")
                    env[key] = value.strip().strip("\"'")
    for key, value in env.items():  # values may point into the image's task root: that is the code directory
        env[key] = value.replace("${LAMBDA_TASK_ROOT}", str(code_dir)).replace("$LAMBDA_TASK_ROOT", str(code_dir))
    return code_dir, env, command
