"""Checks on the synthesized output: cdk-nag (AwsSolutions), cfn-lint, asl-validator."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _violations(report_path: Path) -> set[tuple[str, str]]:
    """(construct path, rule) of every finding in a CDK policy-validation report."""
    report = json.loads(report_path.read_text())
    found = set()
    for plugin in report.get("pluginReports", []):
        for violation in plugin.get("violations", []):
            for resource in violation.get("violatingConstructs", []) + violation.get("violatingResources", []):
                found.add((resource.get("constructPath", ""), violation["ruleName"]))
    return found


def test_cdk_nag_is_clean(synth):
    """The synth above ran the AwsSolutions checks and succeeded; its report lists no violation."""
    report = synth.outdir / "validation-report.json"
    if report.exists():
        assert _violations(report) == set()


def test_cdk_nag_fails_synthesis_on_a_finding(tmp_path):
    """The check can fail: a deliberately non-compliant queue in a throwaway app is flagged and synth raises."""
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "NonCompliant")
    sqs.Queue(stack, "PlainQueue", encryption=sqs.QueueEncryption.UNENCRYPTED)   # no SSL policy, no SSE, no DLQ
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(Exception, match="Validation ?[Ff]ailed"):
        app.synth()
    rules = {rule for _, rule in _violations(tmp_path / "validation-report.json")}
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= rules


def _findings_without_acknowledgements(tmp_path_factory, artifact) -> set[tuple[str, str]]:
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out.noack")
    app, _ = build_app(outdir=str(outdir), overrides={"modelArtifact": str(artifact)}, acknowledge_nag=False)
    with pytest.raises(Exception, match="Validation ?[Ff]ailed"):
        app.synth()
    return _violations(outdir / "validation-report.json")


def test_acknowledgements_are_exact(synth, tmp_path_factory):
    """Synthesize again without the acknowledgements: each acknowledgement must still cover a real finding (no
    stale ones), every finding must be acknowledged, and every reason must say something specific."""
    findings = _findings_without_acknowledgements(tmp_path_factory, synth.artifact)
    acks = synth.stack.acknowledgements
    assert acks, "the stack acknowledges nothing?"
    for ack in acks:
        matched = {(path, rule) for path, rule in findings
                   if rule == ack.rule and (path == ack.path or path.startswith(ack.path + "/"))}
        assert matched, f"stale acknowledgement: {ack.rule} on {ack.path}"
        assert len(ack.reason) >= 80, f"{ack.rule} on {ack.path}: give a specific reason"
    for path, rule in findings:
        assert any(rule == a.rule and (path == a.path or path.startswith(a.path + "/")) for a in acks), (path, rule)
    # the pack's rules we do satisfy stay satisfied (no acknowledgement for them anywhere)
    assert not {rule for _, rule in findings} & {"AwsSolutions-IAM4", "AwsSolutions-S1", "AwsSolutions-S10",
                                                  "AwsSolutions-SQS4", "AwsSolutions-DDB3", "AwsSolutions-APIG1",
                                                  "AwsSolutions-APIG4", "AwsSolutions-SNS2", "AwsSolutions-SNS3",
                                                  "AwsSolutions-SF2", "AwsSolutions-KMS5", "AwsSolutions-KDS3"}


def test_cfn_lint(synth):
    from cfnlint.api import ManualArgs, lint_file

    template = synth.outdir / f"{synth.stack.artifact_id}.template.json"
    matches = lint_file(template, config=ManualArgs(
        ignore_checks=["W3005"],   # CDK adds DependsOn next to GetAtt (role policies): redundant, harmless
        regions=["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"]))
    assert [str(m) for m in matches] == []


def test_asl_validator():
    npx = shutil.which("npx")
    if npx is None or not (ROOT / "node_modules" / "asl-validator").is_dir():
        pytest.skip("asl-validator is not installed (run `npm ci`, or `make test` which does)")
    for path in sorted((ROOT / "statemachines").glob("*.asl.json")):
        result = subprocess.run([npx, "--no-install", "asl-validator", "--json-path", str(path)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
