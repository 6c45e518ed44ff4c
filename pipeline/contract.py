"""The published contract in ``schemas/``: the record's JSON Schema and the tables' columns.

Both files are generated from the code (``pipeline schema``); ``tests/test_contract.py`` fails
when the files and the code drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import WriteError
from pipeline.models import Procedure

RECORD_SCHEMA = "procedure.schema.json"
TABLES_SCHEMA = "tables.json"


def record_schema() -> dict[str, Any]:
    """The JSON Schema of one record (what ``pipeline parse`` prints per line)."""
    schema = Procedure.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = RECORD_SCHEMA
    return schema


def tables_schema() -> dict[str, Any]:
    """Every output table's columns, dtypes, nullability and keys."""
    from pipeline.load.tables import contract

    return contract()


def render(document: dict[str, Any]) -> str:
    """The exact text a contract file holds (stable: sorted keys, two-space indent)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_contracts(directory: Path) -> list[Path]:
    """Write both contract files to ``directory``; returns their paths."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, document in ((RECORD_SCHEMA, record_schema()), (TABLES_SCHEMA, tables_schema())):
            path = directory / name
            path.write_text(render(document), encoding="utf-8")
            written.append(path)
        return written
    except OSError as exc:
        raise WriteError(f"cannot write the contract to {directory}: {exc.strerror}") from exc
