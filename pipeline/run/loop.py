"""Running the acquire stage's event loop so that a signal stops it cleanly.

``asyncio.run`` already turns Ctrl-C into a cancellation of the main task, and raises
``KeyboardInterrupt`` once every task has unwound. SIGTERM gets no such care: the command
line's handler raises ``KeyboardInterrupt`` wherever the interpreter happens to be, inside some
task's step, and asyncio then reports that task's exception as "never retrieved", traceback
and all. :func:`run` handles SIGTERM as asyncio handles SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``; a SIGTERM meanwhile cancels ``main`` (its fetches unwind) and
    then raises KeyboardInterrupt, as Ctrl-C does. Outside the main thread (where no signal
    handler can be set) it is plain ``asyncio.run``."""
    terminated = False
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main_thread else None

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            if task is not None:
                task.cancel()

        if in_main_thread:
            # Kept until the loop closes (which removes it), so that a SIGTERM while the
            # tasks unwind is handled here too, never raised inside one of them.
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        return await main

    try:
        result = asyncio.run(guarded())
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)  # the loop leaves SIG_DFL behind
    if terminated:  # it came as the run finished: still a stop asked for
        raise KeyboardInterrupt
    return result
