"""The README's claims that a test can check: the CI command, the quick start, the dictionary."""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text("utf-8")
TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest'
)


def _shell_blocks(section: str) -> list[str]:
    body = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", body, re.DOTALL)


def test_quick_start_is_exactly_two_commands() -> None:
    commands = [line for block in _shell_blocks("Quick start") for line in block.splitlines()]
    assert len(commands) == 2
    assert commands[0].endswith("pipeline demo")
    assert commands[1] == TEST_COMMAND


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert TEST_COMMAND in ci.splitlines()


def test_data_dictionary_names_every_table_and_column() -> None:
    contract = json.loads((ROOT / "schemas" / "tables.json").read_text("utf-8"))
    for table, spec in contract["tables"].items():
        assert f"`{table}`" in README, table
        for column in spec["columns"]:
            assert f"`{column['name']}`" in README, f"{table}.{column['name']}"


def test_the_readme_stands_alone() -> None:
    """The project's docs name no file outside the repository (a reader has only the repo)."""
    text = (ROOT / "README.md").read_text("utf-8")
    assert "../shared/SPEC.md" not in text
    for field in ("anesthesia", "hospital_stay", "similar_codes", "other_sections"):
        assert f"| {field} |" in text, field  # the record's fields are described here
