"""The files in schemas/ are exactly what the code generates (no drift either way)."""

from __future__ import annotations

import pytest

from pipeline.contract import RECORD_SCHEMA, TABLES_SCHEMA, record_schema, render, tables_schema
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("name", "build"), [(RECORD_SCHEMA, record_schema), (TABLES_SCHEMA, tables_schema)]
)
def test_schema_file_matches_code(name: str, build: object) -> None:
    path = ROOT / "schemas" / name
    assert path.exists(), f"{path} missing: run `pipeline schema`"
    assert callable(build)
    assert path.read_text("utf-8") == render(build()), (
        f"{path} is out of date with the code: run `pipeline schema` and review the diff"
    )


def test_record_schema_names_every_field() -> None:
    props = record_schema()["properties"]
    for field in ("code", "code_system", "title", "duration", "setting", "personnel", "anesthesia"):
        assert field in props
