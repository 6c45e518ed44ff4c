"""The command line: ``pipeline parse | ingest | crawl | reparse | status | demo | schema``.

Exit codes (SPEC.md): 0 all good; 1 finished, some pages rejected; 2 usage or configuration
error; 3 the run could not proceed (another run holds the lock, state unreadable, output not
writable). Every error a user can cause is one line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline import __version__
from pipeline.errors import PipelineError, StateError, UsageError, WriteError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_REJECTS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn the pipeline's errors into one line on stderr and the SPEC exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            _fail(str(exc), EXIT_USAGE)
        except (StateError, WriteError) as exc:
            _fail(str(exc), EXIT_FAILED)
        except PipelineError as exc:
            _fail(f"{exc.kind}: {exc}", EXIT_FAILED)
        except KeyboardInterrupt:
            _fail("interrupted; the state is kept, run the same command again to resume", 130)
        return None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pipeline")
def cli() -> None:
    """Scrape and normalize plain-language medical procedure pages into typed tables."""


@cli.command("parse")
@click.argument("inputs", nargs=-1, required=True, metavar="PATH_OR_URL...")
@click.option("--timeout", type=float, default=None, help="Read timeout for URLs, seconds.")
@handle_errors
def parse_cmd(inputs: tuple[str, ...], timeout: float | None) -> None:
    """Parse pages (files, directories, URLs) and print one JSON record per line.

    A page that cannot be parsed gets one line on stderr with its path and reason. Exits 1 at
    the end if any page was rejected, else 0. Writes nothing.
    """
    from pipeline.runner import parse_inputs

    out = click.get_text_stream("stdout")
    rejected = 0
    for source, outcome in parse_inputs(list(inputs), timeout=timeout):
        if isinstance(outcome, PipelineError):
            rejected += 1
            click.echo(f"{source}: {outcome.stage}: {outcome.kind}: {outcome}", err=True)
        else:
            out.write(outcome.model_dump_json() + "\n")
    out.flush()
    sys.exit(EXIT_REJECTS if rejected else EXIT_OK)


@cli.command("schema")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="Where to write the contract files.",
)
@handle_errors
def schema_cmd(directory: Path) -> None:
    """Write the record's JSON Schema and the tables' contract to DIR."""
    from pipeline.contract import write_contracts

    for path in write_contracts(directory):
        click.echo(str(path))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="pipeline")


def dump_json(value: Any) -> str:
    """JSON for the terminal: stable key order, UTF-8 kept."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
