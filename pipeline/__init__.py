"""Scrape and normalize plain-language medical procedure pages into typed tables.

The public API, used by the command line itself::

    from pipeline import parse_page, Procedure, PipelineError

    record = parse_page(html_bytes, url="https://example.org/code/cpt4/22212-osteotomy")

``parse_page`` returns a validated :class:`Procedure` or raises a :class:`PipelineError`
(``err.stage``, ``err.kind``, ``err.reason``); the whole exception tree is in
:mod:`pipeline.errors`, the record's parts in :mod:`pipeline.models`.
"""

from pipeline import errors
from pipeline.errors import PipelineError
from pipeline.extract.page import PARSER_VERSION, parse_page
from pipeline.models import CodeSystem, Procedure
from pipeline.version import __version__

__all__ = [
    "PARSER_VERSION",
    "CodeSystem",
    "PipelineError",
    "Procedure",
    "__version__",
    "errors",
    "parse_page",
]
