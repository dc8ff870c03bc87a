#!/usr/bin/env python3
"""CDK app entry: reads the settings from cdk.json's "context", builds RealtimeInferenceStack, runs the cdk-nag
AwsSolutions checks (an unacknowledged finding fails synthesis) and synthesizes to $CDK_OUTDIR or cdk.out.

    .venv/bin/python app.py                      # plain synth, no CDK CLI needed (what `make synth` runs)
    .venv/bin/python app.py -c batchSize=200     # -c overrides as the CDK CLI takes them (make CDK_CONTEXT="...")
    npx cdk synth -c shardCount=4                # through the CLI: -c values override cdk.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra import synth_inputs
from infra.config import KNOWN_KEYS, Config, ConfigError, unknown_keys
from infra.stack import RealtimeInferenceStack

ROOT = Path(__file__).resolve().parent
CDK_JSON = ROOT / "cdk.json"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    return dict(json.loads(path.read_text()).get("context", {}))


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None,
              overrides: Mapping[str, Any] | None = None,
              acknowledge_nag: bool = True) -> tuple[cdk.App, RealtimeInferenceStack]:
    """The app and its stack. ``context`` defaults to cdk.json's; ``overrides`` win over it (CLI ``-c`` values,
    passed by the CDK CLI through the environment, win over both)."""
    base = cdk_json_context() if context is None else dict(context)
    unknown = unknown_keys(base)
    if unknown:
        raise ConfigError(f"unknown setting(s) in the CDK context: {', '.join(unknown)} (known: see infra/config.py)")
    base.update(overrides or {})
    app = cdk.App(outdir=outdir or os.environ.get("CDK_OUTDIR", "cdk.out"), context=base,
                  analytics_reporting=False)
    config = Config.from_context(app.node.try_get_context)
    # cdk.json "region" (optional): a concrete region, checked at synth (image map); unset: environment-agnostic
    env = cdk.Environment(region=config.region) if config.region else None
    stack = RealtimeInferenceStack(
        app, config.stack_name, config=config, acknowledge_nag=acknowledge_nag, env=env,
        description="Serverless real-time inference: Kinesis -> Lambda -> Step Functions -> SageMaker, "
                    "DynamoDB features/predictions, self-tuning batch size (reference project)")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def effective_context(app: cdk.App) -> dict[str, Any]:
    """The project's settings as the stack read them (cdk.json, then -c values from this command or the CLI)."""
    keys = set(cdk_json_context()) | KNOWN_KEYS
    return {k: v for k in sorted(keys) if (v := app.node.try_get_context(k)) is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="override a cdk.json context value, as `cdk synth -c` does (repeatable)")
    args = parser.parse_args(argv)
    try:
        overrides = synth_inputs.parse_context_args([w for pair in args.context for w in ("-c", pair)])
        app, _ = build_app(overrides=overrides)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assembly = app.synth()
    # what this synth was made from: the demo and the benches refuse a cdk.out that no longer matches it
    synth_inputs.record(assembly.directory, effective_context(app))
    return 0


if __name__ == "__main__":
    sys.exit(main())
