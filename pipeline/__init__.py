"""Scrape and normalize plain-language medical procedure pages into typed tables.

The public API, used by the command line itself::

    from pipeline import parse_page, Procedure, PipelineError
    record = parse_page(html_bytes, url="https://example.org/code/cpt4/22212-osteotomy")
"""

from pipeline.errors import PipelineError
from pipeline.models import Procedure

__version__ = "0.1.0"

__all__ = ["PipelineError", "Procedure", "__version__"]
