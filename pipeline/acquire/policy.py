"""What a fetcher may do: its retry policy and its limits (sizes, timeouts), validated when made."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import (
    UsageError,
)

MiB = 1024 * 1024

Jitter = Literal["full", "decorrelated", "none"]


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """The single source of truth for retries.

    ``max_attempts`` counts the first try. Between attempts the fetcher waits what the server's
    ``Retry-After`` asks, otherwise an exponential backoff from ``backoff_initial`` doubling up
    to ``backoff_max``, with ``jitter``: ``"full"`` (uniform in ``[0, backoff]``),
    ``"decorrelated"`` (uniform in ``[initial, 3 * previous]``) or ``"none"``. Only statuses in
    ``retry_statuses`` are retried; every other error status is terminal.

    A Retry-After is waited inside the fetch only up to :attr:`inline_limit` (``inline_wait_max``,
    never more than ``retry_after_cap``): a longer one is raised at once, with the host held
    meanwhile, for the caller to try the page again when it is due (the crawl re-queues it when
    the wait is at most ``retry_after_cap``, and leaves it to a later run otherwise). No wait at
    all follows the last attempt.
    """

    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    jitter: Jitter = "full"
    retry_after_cap: float = 120.0
    inline_wait_max: float = 5.0
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UsageError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.backoff_initial < 0 or self.backoff_max < self.backoff_initial:
            raise UsageError("backoff needs 0 <= backoff_initial <= backoff_max")
        if self.retry_after_cap < 0:
            raise UsageError("retry_after_cap must not be negative")
        if self.inline_wait_max < 0:
            raise UsageError("inline_wait_max must not be negative")
        if self.jitter not in ("full", "decorrelated", "none"):
            raise UsageError(f"unknown jitter {self.jitter!r}")

    def backoff(
        self, attempt: int, *, previous: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) with no Retry-After."""
        rng = rng or random.Random()
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt - 1, 64))
        if self.jitter == "none":
            return ceiling
        if self.jitter == "full":
            return rng.uniform(0.0, ceiling)
        base = previous if previous is not None else self.backoff_initial
        return min(self.backoff_max, rng.uniform(self.backoff_initial, base * 3.0))

    @property
    def inline_limit(self) -> float:
        """The longest Retry-After (or host hold) a fetch waits out inline before a retry."""
        return min(self.inline_wait_max, self.retry_after_cap)

    def retry_after_wait(self, retry_after: float) -> float:
        """The wait for a server's Retry-After, never negative and at most ``retry_after_cap``."""
        return min(max(retry_after, 0.0), self.retry_after_cap)


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on one request: body size, timeouts (seconds) and redirect hops.

    ``total_timeout`` bounds one whole exchange (headers and body) so that a server trickling
    bytes slower than ``read_timeout`` notices cannot hold a request forever.
    """

    max_bytes: int = 5 * MiB
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_redirects < 0:
            raise UsageError("max_bytes must be positive and max_redirects not negative")
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise UsageError("timeouts must be positive")
