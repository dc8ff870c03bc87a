"""Every command in the README's code blocks works. Commands for the local cloud run for real against the deployed
stack (pointed at it with --state-dir, as `make up`'s state file would); commands that need AWS, Docker or a full
`make run` are checked for their arguments only; make targets with `make -n`. A command the README gains must be
classified here, or the test fails."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(r"^(make|python|\.venv/bin/python|npx|docker)\s")
NEEDS_AWS = ("--stack", "--target localstack")
# commands that cannot run here at all: what they need instead
NOT_HERE = {"npx cdk bootstrap": "an AWS account", "docker compose up -d": "Docker"}
# long runs: checked for their arguments only (the demo is what `make run` runs; `up` serves until Ctrl-C)
ARGUMENTS_ONLY = ("scripts/demo.py", "-m localcloud up")


def readme_commands() -> list[str]:
    """Command lines of the README's fenced code blocks (indented blocks too), trailing `# comments` removed."""
    commands, fenced = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        command = re.split(r"\s{2,}#", line.strip())[0].strip()
        if fenced and COMMAND.match(command):
            commands.append(command)
    return commands


COMMANDS = readme_commands()


def test_the_readme_documents_commands_and_each_is_classified():
    assert len(COMMANDS) >= 15 and "make run" in COMMANDS
    for command in COMMANDS:
        assert command.startswith(("make ", "python ", ".venv/bin/python ")) or command in NOT_HERE, command


def test_the_cdk_cli_the_aws_commands_use_is_installed():
    """`npx cdk bootstrap` needs an AWS account; the CLI it runs must at least be there (npm ci)."""
    assert any(c.startswith("npx cdk ") for c in COMMANDS)
    result = _run(["npx", "--no-install", "cdk", "--version"])
    assert result.returncode == 0 and re.match(r"2\.\d+", result.stdout), result.stdout + result.stderr


def _python(command: str, extra: list[str]) -> list[str]:
    """The command with this interpreter, ``extra`` inserted where the script's top-level options go."""
    words = shlex.split(command)[1:]
    if words[0] == "-m":          # python -m localcloud <command> ...: its options follow the command
        return [sys.executable, *words, *extra]
    return [sys.executable, words[0], *extra, *words[1:]]


def _run(argv: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, **env))


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("make ")])
def test_make_targets_exist_and_take_cdk_context(command):
    result = _run(["make", "-n", *shlex.split(command)[1:], 'CDK_CONTEXT=-c batchSize=200'])
    assert result.returncode == 0, result.stderr
    target = shlex.split(command)[1]
    if target in ("run", "up", "synth"):
        assert "app.py -c batchSize=200" in result.stdout
    if target in ("run", "up"):
        assert '--context "-c batchSize=200"' in result.stdout


ARGUMENT_CHECKS = [c for c in COMMANDS if c.startswith(("python ", ".venv/bin/python "))
                   and (any(flag in c for flag in NEEDS_AWS) or any(part in c for part in ARGUMENTS_ONLY))]


@pytest.mark.parametrize("command", ARGUMENT_CHECKS)
def test_commands_that_need_aws_or_a_long_run_parse_their_arguments(command, tmp_path):
    """Run with no reachable AWS (a closed endpoint, one attempt) and, for the long runs, an empty cdk.out: the
    command gets past argument parsing and fails on what it cannot reach, with a message, not a usage error."""
    extra = ["--cdk-out", str(tmp_path)] if any(part in command for part in ARGUMENTS_ONLY) else []
    result = _run(_python(command, extra), AWS_ENDPOINT_URL="http://127.0.0.1:9",
                  AWS_MAX_ATTEMPTS="1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1",
                  LOCALSTACK_HOST="127.0.0.1:9")
    assert "usage:" not in result.stderr and "unrecognized arguments" not in result.stderr, result.stderr
    assert result.returncode != 0 and result.stderr.strip()      # it said why it could not go on


LOCAL = [c for c in COMMANDS if c.startswith(("python ", ".venv/bin/python ")) and c not in ARGUMENT_CHECKS]


def test_local_commands_run_against_the_deployed_stack(cloud):
    """In README order (send events, query them, promote and roll back, status), each exits 0."""
    assert len(LOCAL) >= 10
    for command in LOCAL:
        result = _run(_python(command, ["--state-dir", str(cloud.state_dir)]))
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        if "send_events" in command:
            assert cloud.wait_idle(120), "the pipeline did not drain"
