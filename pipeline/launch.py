"""The console script's entry point: as little as possible runs before Ctrl-C is handled.

Importing the command line (click, pydantic, polars, lexbor) takes a moment. A Ctrl-C or a
SIGTERM in that moment ends the process as one during a run does: one line on stderr and exit
130, never a traceback. Only the standard library is imported here (and the exception tree,
which needs nothing else).
"""

from __future__ import annotations

import signal
import sys

from pipeline.errors import EXIT_INTERRUPTED


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler stopping the run) or SIGHUP ends it as Ctrl-C does."""
    raise KeyboardInterrupt


def interrupted(message: str = "interrupted; nothing was written") -> None:
    """The one line and exit code of a run stopped by Ctrl-C or SIGTERM."""
    sys.stderr.write(f"error: {message}\n")
    sys.exit(EXIT_INTERRUPTED)


#: Signals that stop a run as Ctrl-C does: a scheduler's SIGTERM, a closed terminal's SIGHUP.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def main() -> None:
    """Console-script entry point: ``pipeline``."""
    for stop in STOP_SIGNALS:
        if signal.getsignal(stop) is not signal.SIG_IGN:  # `nohup` asked to ignore SIGHUP
            signal.signal(stop, _terminate)
    try:
        from pipeline.cli import run
    except KeyboardInterrupt:
        interrupted()
    run()
