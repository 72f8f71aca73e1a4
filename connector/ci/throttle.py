"""Client-side request throttle: one token bucket per CI account.

Retrying each call on 429 is not enough when several workers share one account: the budget is
per account, so the caller must be throttled as a whole (peers.md §2 item 2). A bucket of
capacity ``burst`` refills at ``rate`` tokens per second; ``acquire`` blocks until a token is
free. Thread-safe, monotonic clock, ``rate <= 0`` means "off".

:meth:`Throttle.hold` spreads a ``Retry-After`` over every thread: the thread that got it waits
inside urllib3's retry, the others wait at their next :meth:`Throttle.acquire` (calls in flight
in parallel, ``ack_concurrency``, must not keep hammering an account CI asked to slow down).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Throttle", "shared_throttle"]


class Throttle:
    """A thread-safe token bucket.

    :param rate: tokens per second; ``0`` (or less) disables throttling.
    :param burst: bucket capacity; ``1`` makes it a plain minimum interval of ``1 / rate``.
    :param clock: monotonic clock (seconds), injectable for tests.
    :param sleep: sleep function, injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError(f"throttle burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._updated = clock()
        self._held_until = 0.0  # clock() time before which other threads wait (Retry-After)
        self._holder = 0  # the thread that was told to wait (it waits in its own retry)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def hold(self, seconds: float) -> None:
        """CI said ``Retry-After: seconds`` to the calling thread: other threads' next
        :meth:`acquire` waits until then too (the caller waits in its own retry)."""
        if seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            if until > self._held_until:
                self._held_until, self._holder = until, threading.get_ident()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available (and until a ``Retry-After``
        another thread got has passed). Returns the seconds waited."""
        if not self.enabled and not self._held_until:
            return 0.0
        with self._lock:
            now = self._clock()
            wait = 0.0
            if self.enabled:
                self._tokens = min(
                    float(self.burst), self._tokens + (now - self._updated) * self.rate
                )
                self._updated = now
                # Reserve the token now (possibly going negative) so concurrent callers queue
                # up behind each other instead of all waking at the same instant.
                self._tokens -= 1.0
                wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            if self._holder != threading.get_ident():
                wait = max(wait, self._held_until - now)
        if wait > 0:
            self._sleep(wait)
        return wait


_shared: dict[tuple[str, float], Throttle] = {}
_shared_lock = threading.Lock()


def shared_throttle(key: str, rate: float) -> Throttle:
    """The process-wide throttle for ``key`` (e.g. base URL + supplier id) at ``rate``.

    Clients built for the same account share one bucket, so the account's budget holds across
    every client and thread in the process.
    """
    with _shared_lock:
        found = _shared.get((key, rate))
        if found is None:
            found = _shared[(key, rate)] = Throttle(rate)
        return found
