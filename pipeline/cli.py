"""The command line: ``pipeline parse | ingest | crawl | reparse | status | demo | schema``.

Exit codes (:mod:`pipeline.errors`): 0 all good; 1 finished, some pages rejected or failed;
2 usage or configuration error; 3 the run could not proceed (another run holds the lock, state
unreadable, output or disk not writable, nothing reached); 4 an unexpected error (one line, the
traceback in a crash file); 130 interrupted (Ctrl-C, SIGTERM); 141 stdout's reader went away.
Every error a user can cause is one line on stderr (JSON with ``--log-format json``), never a
traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import sys
import tempfile
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pipeline.config import Settings, load_settings
from pipeline.errors import (
    CANNOT_WRITE,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTS,
    EXIT_USAGE,
    PipelineError,
    StateError,
    UsageError,
    WriteError,
)
from pipeline.launch import interrupted
from pipeline.run.progress import LOG, configure_logging
from pipeline.version import __version__

if TYPE_CHECKING:  # the crawl machinery is imported by the commands that use it
    from pipeline.run.crawl import CrawlOptions, RunResult

F = TypeVar("F", bound=Callable[..., Any])

#: The demo serves its site here (the port of the site's placeholder origin), so that repeated
#: demos see the same URLs and the second one is incremental.
DEMO_PORT = 8765


#: Whether the error line is a JSON object (``--log-format json``), as the log lines are.
_json_errors: ContextVar[bool] = ContextVar("pipeline_json_errors", default=False)


def _fail(message: str, code: int) -> None:
    if _json_errors.get():
        line = dump_json({"event": "error", "level": "error", "message": message,
                          "exit_code": code})  # fmt: skip
    else:
        line = f"error: {message}"
    _say(line)
    sys.exit(code)


def _say(text: str) -> None:
    """A line on stderr that cannot change the exit code: on a full or closed stderr (a log
    file on a full disk) it is lost, and the run still exits with the code it earned."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(text, err=True)


def _internal_error(exc: BaseException) -> None:
    """An error the pipeline did not expect: one line on stderr naming a file that holds the
    traceback, exit 4 (never 1, which schedulers read as "finished, some rejects")."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    report = Path(tempfile.gettempdir()) / f"pipeline-crash-{stamp}-{os.getpid()}.log"
    trace = "".join(traceback.format_exception(exc))
    where = f"traceback in {report}"
    try:
        report.write_text(trace, encoding="utf-8")
    except OSError:
        where = "no traceback: the crash file could not be written"
    _fail(f"internal error: {type(exc).__name__}: {exc} ({where})", EXIT_INTERNAL)


def reader_went_away() -> None:
    """stdout's reader closed the pipe (``pipeline parse DIR | head``): not an error of ours.
    Exit as a process killed by SIGPIPE would (141), silently; stdout goes to /dev/null so
    that the interpreter's final flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


def handle_errors(func: F) -> F:
    """Turn the pipeline's errors into one line on stderr and the SPEC exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Known before the settings load (they may be what fails): the option, else the variable.
        wanted = kwargs.get("log_format") or os.environ.get("PIPELINE_LOG_FORMAT")
        _json_errors.set(wanted == "json")
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            _fail(str(exc), EXIT_USAGE)
        except (StateError, WriteError) as exc:
            _fail(str(exc), EXIT_FAILED)
        except PipelineError as exc:
            _fail(f"{exc.kind}: {exc}", EXIT_FAILED)
        except KeyboardInterrupt:
            stateful = click.get_current_context(silent=True)
            name = stateful.info_name if stateful is not None else None
            if name in ("crawl", "reparse", "demo"):
                _fail(
                    "interrupted; the state is kept, run the same command again to resume",
                    EXIT_INTERRUPTED,
                )
            _fail("interrupted; nothing was written", EXIT_INTERRUPTED)
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                _fail(f"cannot write the state database: {exc}", EXIT_FAILED)
            _fail(f"the state database is damaged: {exc}", EXIT_FAILED)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own ways out: usage errors and exits it reports itself
        except BrokenPipeError:
            reader_went_away()
        except OSError as exc:
            if exc.errno not in CANNOT_WRITE:
                _internal_error(exc)
            _fail(f"cannot write {exc.filename or 'a file'}: {exc.strerror}", EXIT_FAILED)
        except Exception as exc:
            _internal_error(exc)
        return None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pipeline")
def cli() -> None:
    """Scrape and normalize plain-language medical procedure pages into typed tables."""


@cli.command("parse")
@click.argument("inputs", nargs=-1, required=True, metavar="PATH_OR_URL...")
@click.option("--timeout", type=float, default=None, help="Read timeout for URLs, seconds.")
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="Where a saved page came from: its source, and where its code is looked for last "
    "(a clinic page that names its code only in its address). One FILE only.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Processes that extract pages [default: every core].",
)
@handle_errors
def parse_cmd(
    inputs: tuple[str, ...], timeout: float | None, url: str | None, workers: int | None
) -> None:
    """Parse pages (files, directories, URLs) and print one JSON record per line.

    A page that cannot be parsed gets one line on stderr with its path and reason. Exits 1 at
    the end if any page was rejected, else 0; 3 if none of the URLs given answered. Writes
    nothing.
    """
    from pipeline.run.runner import Reach, parse_inputs

    if sys.stdout is None:  # started with stdout closed (`>&-`)
        raise UsageError("stdout is closed: the records have nowhere to go; redirect it")
    workers = _settings(workers=workers, timeout=timeout).workers  # $PIPELINE_WORKERS too
    out = sys.stdout
    rejected = 0
    reach = Reach()
    for source, outcome in parse_inputs(list(inputs), timeout=timeout, url=url, workers=workers):
        reach.count(outcome)
        if isinstance(outcome, PipelineError):
            rejected += 1
            _say(f"{source}: {outcome.stage}: {outcome.kind}: {outcome}")
        else:
            out.write(outcome.model_dump_json() + "\n")
    out.flush()
    could_not_proceed = reach.nothing_reached()
    if could_not_proceed:
        _fail(could_not_proceed, EXIT_FAILED)
    sys.exit(EXIT_REJECTS if rejected else EXIT_OK)


# --- shared options ----------------------------------------------------------------------------


def _common(func: F) -> F:
    """Options every batch command takes."""
    options = [
        click.option(
            "--config",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="TOML config file (default: $PIPELINE_CONFIG, else ./pipeline.toml).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default=None,
            help="Log lines as text or as JSON objects (for schedulers).",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="Progress bar (default: only when stderr is a terminal).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class _Directory(click.Path):
    """A directory option: an empty value is an error (``Path("")`` would be the current
    directory, and the tables or the state would land wherever the run starts)."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("must name a directory (it is empty)", param, ctx)
        return super().convert(value, param, ctx)


def _out_option(func: F) -> F:
    return click.option(
        "--out",
        type=_Directory(),
        default=None,
        help="Output directory of the tables [default: output].",
    )(func)


def _state_option(func: F) -> F:
    return click.option(
        "--state",
        type=_Directory(),
        default=None,
        help="State directory: crawl database and raw archive [default: state].",
    )(func)


def _settings(**options: Any) -> Settings:
    settings = load_settings(**options)
    configure_logging(settings.log_format)
    _json_errors.set(settings.log_format == "json")  # the config file may ask for it too
    return settings


def _crawl_options(settings: Settings) -> CrawlOptions:
    from pipeline.run.crawl import CrawlOptions

    return CrawlOptions(
        out=settings.out,
        state=settings.state,
        concurrency=settings.concurrency,
        per_host_concurrency=settings.per_host_concurrency,
        rate=settings.rate,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        max_pages=settings.max_pages,
        max_depth=settings.max_depth,
        refresh_after=settings.refresh_after,
        obey_robots=settings.obey_robots,
        allowed_hosts=tuple(settings.allowed_hosts),
        user_agent=settings.user_agent,
        profile=settings.profile(),
        workers=settings.workers,
    )


def _report(result: RunResult, settings: Settings) -> None:
    if settings.log_format == "json":
        _say(dump_json({"event": "summary", "run_id": result.run_id, **result.summary,
                        "exit_code": result.exit_code}))  # fmt: skip
    else:
        _say(result.text)
    sys.exit(result.exit_code)


# --- commands ----------------------------------------------------------------------------------


@cli.command("ingest")
@click.argument("inputs", nargs=-1, required=True, metavar="PATH_OR_URL...")
@_out_option
@click.option("--timeout", type=float, default=None, help="Read timeout for URLs, seconds.")
@_common
@handle_errors
def ingest_cmd(
    inputs: tuple[str, ...],
    out: Path | None,
    timeout: float | None,
    config: Path | None,
    log_format: str | None,
    progress: bool | None,
) -> None:
    """One-off ingestion: parse the given pages and merge them into the output tables.

    No discovery: only the files, directories and URLs given are read. Exits 1 if any page
    was rejected (it is in the rejects table), else 0.
    """
    from pipeline.run.crawl import ingest

    settings = _settings(
        config=config, out=out, timeout=timeout, log_format=log_format, progress=progress
    )
    result = ingest(
        list(inputs),
        settings.out,
        timeout=timeout,
        show_progress=settings.progress,
        workers=settings.workers,
    )
    _report(result, settings)


@cli.command("crawl")
@click.argument("seeds", nargs=-1, required=True, metavar="SEED_URL...")
@_out_option
@_state_option
@click.option("--concurrency", type=int, default=None, help="Requests in flight [default: 8].")
@click.option("--per-host-concurrency", type=int, default=None, help="Per host [default: 2].")
@click.option(
    "--rate", type=float, default=None, help="Requests per second per host; 0 = no limit [1.0]."
)
@click.option("--timeout", type=float, default=None, help="Read timeout, seconds [default: 30].")
@click.option("--max-retries", type=int, default=None, help="Retries per page [default: 4].")
@click.option("--max-pages", type=int, default=None, help="Stop after this many fetches.")
@click.option("--max-depth", type=int, default=None, help="Links followed from the seeds.")
@click.option(
    "--refresh-after",
    default=None,
    help="Re-fetch pages older than this: 7d, 12h, 30m [default: 7d].",
)
@click.option("--allow-host", "allowed_hosts", multiple=True, help="Another host to visit.")
@click.option(
    "--ignore-robots", is_flag=True, default=False, help="Do not obey robots.txt (own servers)."
)
@_common
@handle_errors
def crawl_cmd(
    seeds: tuple[str, ...],
    ignore_robots: bool,
    allowed_hosts: tuple[str, ...],
    **options: Any,
) -> None:
    """Scheduled batch run: discover, fetch politely and incrementally, parse, validate, write.

    Discovery follows sitemaps (and robots.txt Sitemap lines), listing pages and each page's
    similar-code links, within the seeds' hosts. A re-run fetches only what is due and sends
    conditional requests; a killed run resumes where it stopped. Exit codes: 0 all good,
    1 some pages rejected, 2 usage error, 3 another run holds the state.
    """
    from pipeline.run.crawl import crawl

    if ignore_robots:
        options["obey_robots"] = False
    if allowed_hosts:
        options["allowed_hosts"] = list(allowed_hosts)
    settings = _settings(**options)
    result = crawl(list(seeds), _crawl_options(settings), show_progress=settings.progress)
    _report(result, settings)


@cli.command("reparse")
@_out_option
@_state_option
@_common
@handle_errors
def reparse_cmd(**options: Any) -> None:
    """Rebuild every table from the stored raw pages with the current parser; no network."""
    from pipeline.run.crawl import reparse

    settings = _settings(**options)
    _require_state(settings.state)
    result = reparse(_crawl_options(settings), show_progress=settings.progress)
    _report(result, settings)


@cli.command("status")
@_state_option
@_out_option
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@handle_errors
def status_cmd(state: Path | None, out: Path | None, config: Path | None, as_json: bool) -> None:
    """What the state holds: pages by status, last run, pages due, rejects by reason; and the
    extraction quality of the last run in the output tables (fill rates, flagged fields)."""
    from pipeline.acquire.state import read_status
    from pipeline.load.write import read_quality

    settings = load_settings(config=config, state=state, out=out)
    _require_state(settings.state)
    info = read_status(settings.state, refresh_after=settings.refresh_after)
    quality = read_quality(settings.out)
    if quality is not None:
        info["extraction_quality"] = quality
    if as_json:
        click.echo(dump_json(info))
        return
    _echo_tree(info)


def _echo_tree(info: dict[str, Any], indent: str = "") -> None:
    for key, value in info.items():
        if isinstance(value, dict):
            click.echo(f"{indent}{key}:")
            _echo_tree(value, indent + "  ")
        elif isinstance(value, list):
            click.echo(f"{indent}{key}: {', '.join(map(str, value)) or '-'}")
        else:
            click.echo(f"{indent}{key}: {value}")


@cli.command("demo")
@_out_option
@_state_option
@click.option(
    "--site",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Site directory to serve [default: the site bundled with the package].",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEMO_PORT,
    show_default=True,
    help="Loopback port to serve the site on. The site's URLs include it, so a second demo on "
    "the same port is incremental (fetches only what is due); 0 picks a free port.",
)
@_common
@handle_errors
def demo_cmd(site: Path | None, port: int, **options: Any) -> None:
    """Serve the bundled demo site on loopback and crawl it end to end into output/."""
    from pipeline.demo.server import SiteServer, bundled_site
    from pipeline.run.crawl import crawl

    root = site or bundled_site()
    if not root.is_dir():
        raise UsageError(f"demo site {root} not found; pass --site DIR")
    options["state"] = options.get("state") or Path(options.get("out") or "output") / ".state"
    settings = _settings(rate=0, **options)
    try:
        server = SiteServer(root, port=port)
    except OSError as exc:
        raise StateError(
            f"cannot serve the demo site on 127.0.0.1:{port} ({exc.strerror or exc}); "
            "another demo may be running: pass --port N"
        ) from exc
    with server:
        LOG.info(
            "serving %s at %s", root, server.origin,
            extra={"fields": {"event": "serving", "site": str(root), "origin": server.origin}},
        )  # fmt: skip
        result = crawl(
            [server.origin + "/"], _crawl_options(settings), show_progress=settings.progress
        )
    if settings.log_format == "json":
        _report(result, settings)  # one JSON summary, as the other commands give
    _say(result.text)
    for table in ("procedures", "steps", "rejects"):
        _say(f"  {settings.out / 'parquet' / (table + '.parquet')}")
    sys.exit(result.exit_code)


def _require_state(state: Path) -> None:
    from pipeline.acquire.state import ARCHIVE_NAME

    if (state / "state.sqlite3").exists():
        return
    if (state / ARCHIVE_NAME).exists():  # the database went away, the pages did not
        raise StateError(
            f"{state} holds a raw archive but no state database: restore state.sqlite3, or "
            "crawl into a new --state"
        )
    raise UsageError(f"no crawl state in {state}; run `pipeline crawl` first or pass --state")


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


def _wants_json(args: list[str]) -> bool:
    """Whether the command line asks for JSON lines, read before click could parse it."""
    for i, arg in enumerate(args):
        following = args[i + 1 : i + 2]
        if arg == "--log-format=json" or (arg == "--log-format" and following == ["json"]):
            return True
    return os.environ.get("PIPELINE_LOG_FORMAT") == "json"


def run(args: list[str] | None = None) -> None:
    """Run the command line and exit with its code (:func:`pipeline.launch.main` calls this).

    Click's own handling of Ctrl-C would print "Aborted!" and exit 1, the code of "finished,
    some pages rejected": a Ctrl-C that lands outside a command (while click parses the
    options) ends with the same line and 130 as one inside it.
    """
    try:
        code = cli.main(args, prog_name="pipeline", standalone_mode=False)
    except click.Abort:  # what click makes of a KeyboardInterrupt
        interrupted()
    except BrokenPipeError:  # while click wrote --help to a closed pipe
        reader_went_away()
    except click.ClickException as exc:
        if _wants_json(sys.argv[1:] if args is None else args):
            _json_errors.set(True)
            _fail(exc.format_message(), exc.exit_code)
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def main() -> None:
    """Console-script entry point (kept for ``python -m pipeline`` and old installs)."""
    from pipeline.launch import main as launch

    launch()


def dump_json(value: Any) -> str:
    """JSON for the terminal: stable key order, UTF-8 kept."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
