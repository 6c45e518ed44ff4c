"""Running the acquire stage's event loop so that a signal stops it cleanly.

``asyncio.run`` already turns Ctrl-C into a cancellation of the main task, and raises
``KeyboardInterrupt`` once every task has unwound. SIGTERM gets no such care: the command
line's handler raises ``KeyboardInterrupt`` wherever the interpreter happens to be, inside some
task's step, and asyncio then reports that task's exception as "never retrieved", traceback
and all. :func:`run` handles SIGTERM (and SIGHUP) as asyncio handles SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``; a SIGTERM or SIGHUP meanwhile (when the command line set a
    handler for it) cancels ``main`` (its fetches unwind) and then raises KeyboardInterrupt, as
    Ctrl-C does. Outside the main thread (where no signal handler can be set) it is plain
    ``asyncio.run``."""
    stopped = False
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        for stop in (signal.SIGTERM, signal.SIGHUP):
            handler = signal.getsignal(stop)
            if callable(handler):  # neither ignored nor the default
                previous[stop] = handler

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_stop() -> None:
            nonlocal stopped
            stopped = True
            if task is not None:
                task.cancel()

        for stop in previous:
            # Kept until the loop closes (which removes it), so that a signal while the tasks
            # unwind is handled here too, never raised inside one of them.
            loop.add_signal_handler(stop, on_stop)
        return await main

    try:
        result = asyncio.run(guarded())
    except asyncio.CancelledError:
        if stopped:
            raise KeyboardInterrupt from None
        raise
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)  # the loop leaves SIG_DFL behind
    if stopped:  # it came as the run finished: still a stop asked for
        raise KeyboardInterrupt
    return result
