#!/usr/bin/env python3
"""CDK app entry: reads the settings from cdk.json's "context", builds RealtimeInferenceStack, runs the cdk-nag
AwsSolutions checks (an unacknowledged finding fails synthesis) and synthesizes to $CDK_OUTDIR or cdk.out.

    .venv/bin/python app.py                      # plain synth, no CDK CLI needed (what `make synth` runs)
    npx cdk synth -c shardCount=4                # through the CLI: -c values override cdk.json
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import Config, ConfigError, unknown_keys
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


def main() -> int:
    try:
        app, _ = build_app()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
