"""docs/wiring.md held to the deployment contract (pipeline/contract.py, issue 14): every environment variable a
function gets is documented, nothing undocumented is read, each table's keys are the ones the stack creates, and the
runtime's settings read exactly the contract's variables."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pipeline import contract
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _env_rows() -> dict[str, str]:
    """The "Environment variables" table: variable (a cell may name several, comma-separated) -> its description."""
    text = (ROOT / "docs" / "wiring.md").read_text()
    start = text.index("## Environment variables")
    rows = {}
    for line in text[start:text.index("\n## ", start + 1)].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"[A-Z_, ]+", cells[0]) and cells[0] != "---":
            for name in cells[0].split(","):
                rows[name.strip()] = "|".join(cells[1:])
    return rows


def test_the_documented_variables_are_the_contracts():
    assert set(_env_rows()) == contract.COMMON_ENV | set(contract.FUNCTION_SPECIFIC)


def test_each_tables_keys_are_documented_as_the_stack_creates_them():
    rows = _env_rows()
    for table in contract.TABLES.values():
        described = rows[table.env]
        assert f"pk `{table.partition_key}`" in described, (table.env, described[:80])
        if table.sort_key:
            assert f"sk `{table.sort_key}`" in described, (table.env, described[:80])
        if table.ttl:
            assert f"TTL attribute `{table.ttl}`" in described, table.env
        for index in table.indexes:
            assert f"GSI `{index.name}` (pk `{index.partition_key}`" in described, table.env
            assert f"sk `{index.sort_key}` {index.sort_key_type}" in described, table.env


def test_the_settings_read_exactly_the_contracts_variables():
    assert {f.name for f in dataclasses.fields(Settings)} == set(contract.SETTINGS_ENV)


def test_the_state_tables_items_are_documented():
    described = _env_rows()["STATE_TABLE"]
    for key in contract.STATE_ITEMS:
        assert f'"{key}' in described, key


def test_the_documented_execution_input_is_what_process_stream_sends():
    """Every key of the execution input (top level, the process_stream stage, a row) is in the documented example,
    and the example holds no key the input lacks."""
    import json

    from pipeline import stream
    from pipeline.settings import Settings

    text = (ROOT / "docs" / "wiring.md").read_text()
    start = text.index("Execution input (built by process_stream):")
    example = text[text.index("```json", start):text.index("```\n", start + 40)]
    documented = set(re.findall(r'"(\w+)":', example))
    settings = Settings(**{name: "1" if name.endswith(("size", "seconds")) else "x" for name in contract.SETTINGS_ENV})
    row = {"event_id": "e1", "user_id": "u1", "ts": 1.0, "ingest_ts": 1.0, "features": [0.0]}
    sent = json.loads(stream.inference_input([row], "b-1", settings, "v1", {
        "events": 1, "bytes": 1, "seconds": 0.1, "memory_mb": 1, "ddb_rru": 1.0, "ddb_wru": 1, "s3_puts": 1}))
    keys = set(sent) | set(sent["stages"][0]) | set(sent["rows"][0])
    assert keys == documented, (sorted(keys - documented), sorted(documented - keys))
    # and the types the tasks check their input against (pipeline/flow.py) name the same fields
    from pipeline import flow

    assert set(sent) == set(flow.ExecutionInput.__annotations__)
    assert set(sent["rows"][0]) == set(flow.Row.__annotations__)
    assert set(sent["stages"][0]) <= set(flow.Stage.__annotations__)
    assert flow.parse(flow.ExecutionInput, sent) is sent
