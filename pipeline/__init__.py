"""Scrape and normalize plain-language medical procedure pages into typed tables.

The public API, used by the command line itself::

    from pipeline import parse_page, Procedure, PipelineError

    record = parse_page(html_bytes, url="https://example.org/code/cpt4/22212-osteotomy")

``parse_page`` returns a validated :class:`Procedure` or raises a :class:`PipelineError`
(``err.stage``, ``err.kind``, ``err.reason``); the whole exception tree is in
:mod:`pipeline.errors`, the record's parts in :mod:`pipeline.models`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.errors import PipelineError
from pipeline.version import __version__

if TYPE_CHECKING:
    from pipeline.extract.page import PARSER_VERSION, parse_page
    from pipeline.models import CodeSystem, Procedure

#: Imported on first use: the parser and the models pull in lexbor and pydantic, which the
#: command line's start-up (and its Ctrl-C handling) should not wait for.
_LAZY = {
    "PARSER_VERSION": "pipeline.extract.page",
    "parse_page": "pipeline.extract.page",
    "CodeSystem": "pipeline.models",
    "Procedure": "pipeline.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "PARSER_VERSION",
    "CodeSystem",
    "PipelineError",
    "Procedure",
    "__version__",
    "errors",
    "parse_page",
]
