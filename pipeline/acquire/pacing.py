"""Politeness: the pace of requests per host, and the waits between retries."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable

from tenacity import RetryCallState

from pipeline.acquire.policy import RetryPolicy
from pipeline.errors import (
    RetryableStatus,
)

log = logging.getLogger(__name__)


# --- politeness ------------------------------------------------------------------------------


class HostPacer:
    """Keeps the starts of requests to one host at least an interval apart.

    Callers for one host queue on a lock; each sleeps until the interval since the previous
    start has passed, and any hold (:meth:`hold`) is over, then records its own start on the
    (injected) monotonic clock.
    """

    def __init__(
        self, monotonic: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        self._last_start: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def hold(self, host: str, seconds: float) -> None:
        """Send ``host`` nothing for ``seconds`` (it answered 429 or 503): every request to it
        waits, not only the one that was refused, as Scrapy's download slots slow a host."""
        until = self._monotonic() + max(seconds, 0.0)
        self._not_before[host] = max(self._not_before.get(host, until), until)

    def held_for(self, host: str) -> float:
        """Seconds left of ``host``'s hold (0 when it is not held)."""
        until = self._not_before.get(host)
        return 0.0 if until is None else max(0.0, until - self._monotonic())

    async def wait_turn(self, host: str, interval: float, *, max_hold: float = math.inf) -> float:
        """Sleep until ``host`` may be sent its next request, and mark that start; returns 0.

        If ``host`` is held for more than ``max_hold`` seconds, nothing is waited and no turn is
        taken: the seconds left of the hold are returned instead.
        """
        async with self._locks.setdefault(host, asyncio.Lock()):
            held = self.held_for(host)
            if held > max_hold:
                return held
            last = self._last_start.get(host)
            start = max(
                last + interval if last is not None else 0.0, self._not_before.get(host, 0.0)
            )
            delay = start - self._monotonic()
            if delay > 0:
                await self._sleep(delay)
            self._last_start[host] = self._monotonic()
            return 0.0


class RetryWait:
    """tenacity ``wait``: the server's Retry-After if it sent one, else the policy's backoff."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._previous: float | None = None

    def __call__(self, state: RetryCallState) -> float:
        """Seconds to sleep before the next attempt."""
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            return self._policy.retry_after_wait(exc.retry_after)
        delay = self._policy.backoff(state.attempt_number, previous=self._previous, rng=self._rng)
        self._previous = delay
        return delay


def log_retry(state: RetryCallState) -> None:
    """tenacity ``before_sleep``: say what failed and how long the fetcher waits."""
    exc = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.info("attempt %d failed (%s); retrying in %.2f s", state.attempt_number, exc, wait)
