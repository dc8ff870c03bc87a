"""Regenerate infra/image_registries.json from AWS's own image map, as shipped in the SageMaker SDK.

The registry account of each SageMaker container image differs per region. sagemaker-core (a dependency of the
`sagemaker` package; a development dependency here, never a Lambda one) ships the map the SDK's image_uris.retrieve()
uses: sagemaker/core/image_uri_config/<framework>.json. This script copies, for the versions cdk.json deploys
(xgboostImageTag, the version of pytorchImageTag), the repository and the region -> account registries of:
  xgboost.json  inference / versions / <xgboostImageTag>      (SageMaker built-in XGBoost container)
  pytorch.json  inference / versions / <pytorch version>      (AWS Deep Learning Containers, pytorch-inference)

    python scripts/update_image_map.py                 # from the installed sagemaker-core
    python scripts/update_image_map.py --source DIR    # from an unpacked sagemaker-core wheel (or the .whl itself)
    python scripts/update_image_map.py --check         # exit 1 if the file is not what the source gives

tests/infra/test_image_registries.py keeps the file in step with the installed package when it is installed.
"""
from __future__ import annotations

import argparse
import json
import sys
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "infra" / "image_registries.json"
PACKAGE = "sagemaker-core"
CONFIG_DIR = "sagemaker/core/image_uri_config"


class Source:
    """The image_uri_config JSON files of one sagemaker-core: installed, an unpacked wheel, or a .whl."""

    def __init__(self, location: str | Path | None = None):
        self.location = location
        if location is None:
            self.distribution = metadata.distribution(PACKAGE)      # PackageNotFoundError if not installed
            self.version = self.distribution.version
        else:
            path = Path(location)
            self.distribution = None
            self.version = _version_from_path(path)

    def read(self, framework: str) -> dict:
        name = f"{CONFIG_DIR}/{framework}.json"
        if self.distribution is not None:
            return json.loads(Path(self.distribution.locate_file(name)).read_text())
        path = Path(self.location)
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                return json.loads(wheel.read(name))
        return json.loads((path / name).read_text())


def _version_from_path(path: Path) -> str:
    if path.suffix == ".whl":                      # sagemaker_core-2.27.0-py3-none-any.whl
        return path.name.split("-")[1]
    for info in path.glob("sagemaker_core-*.dist-info"):
        return info.name.removeprefix("sagemaker_core-").removesuffix(".dist-info")
    return "unknown"


def deployed_versions(context: dict) -> dict[str, str]:
    """{kind: image version} of what cdk.json deploys ("2.6.0-cpu-py312" -> "2.6.0")."""
    return {"xgboost": context["xgboostImageTag"], "pytorch": context["pytorchImageTag"].split("-")[0]}


def build(source: Source, versions: dict[str, str]) -> dict:
    result: dict = {"generated_by": "scripts/update_image_map.py",
                    "source": {"package": PACKAGE, "version": source.version,
                               "files": [f"{CONFIG_DIR}/xgboost.json", f"{CONFIG_DIR}/pytorch.json"]}}
    for kind, framework in (("xgboost", "xgboost"), ("pytorch", "pytorch")):
        scope = source.read(framework)["inference"]
        version = versions[kind]
        entry = scope["versions"].get(version)
        if entry is None:
            known = ", ".join(v for v in scope["versions"] if v[:1].isdigit())
            raise SystemExit(f"{PACKAGE} {source.version} has no {framework} inference image {version} "
                             f"(known: {known}): change cdk.json or update {PACKAGE}")
        result[kind] = {"version": version, "repository": entry["repository"],
                        "processors": entry.get("processors") or scope.get("processors") or [],
                        "py_versions": entry.get("py_versions") or [],
                        "registries": dict(sorted(entry["registries"].items()))}
    return result


def render(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", help="an unpacked sagemaker-core wheel or the .whl (default: the installed one)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the file differs")
    args = parser.parse_args(argv)
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    try:
        source = Source(args.source)
    except metadata.PackageNotFoundError:
        print(f"{PACKAGE} is not installed: `pip install -r requirements-dev.txt`, or pass --source with a "
              f"downloaded wheel (`pip download --no-deps {PACKAGE} -d DIR`)", file=sys.stderr)
        return 2
    text = render(build(source, deployed_versions(context)))
    if args.check:
        same = OUTPUT.exists() and OUTPUT.read_text() == text
        print(f"{OUTPUT.relative_to(ROOT)} {'matches' if same else 'differs from'} {PACKAGE} {source.version}")
        return 0 if same else 1
    OUTPUT.write_text(text)
    data = json.loads(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)} from {PACKAGE} {source.version}: xgboost {data['xgboost']['version']} in "
          f"{len(data['xgboost']['registries'])} regions, pytorch {data['pytorch']['version']} in "
          f"{len(data['pytorch']['registries'])} regions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
