"""Overlap with the network: a page read ahead, a few outbound calls in flight.

Two small tools for the importer and the dispatcher (issue 11 point 3):

* :func:`prefetch` yields the items of an iterator while the *next* one is produced on a worker
  thread: at most one item ahead, so memory stays flat (page N is processed while page N+1 is
  read, never N+2). Item N is handed over once the request for N+1 is out, so the server
  works on it while the caller holds the GIL.
* :class:`CallPool` runs up to ``workers`` calls at once on threads of their own. Only the
  calls run there (HTTP); results come back to the calling thread, which keeps every ledger
  write (SQLite and PostgreSQL connections belong to one thread).

Both run the work in a copy of the caller's context (so a client's sync budget applies) and
inside a :class:`~connector.ci.bounded.CallScope`: when the caller stops (an exception, a
stop request, Ctrl-C) the calls in flight are cut short and every thread is joined before the
exception goes on, so no thread is left behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar, cast

from connector.ci.bounded import CallGuard, CallScope, current_scope, on_request_written

__all__ = [
    "HEAD_START_SECONDS",
    "CallPool",
    "closing_iter",
    "prefetch",
    "runs_concurrently",
    "thread_setup",
]

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


def runs_concurrently(client: object) -> bool:
    """Whether ``client`` says it may be called from several threads at once
    (:attr:`connector.ci.client.CIClient.concurrent_calls`). Other clients (test fakes,
    host-provided ones) are called from one thread, one call at a time, as before."""
    return getattr(client, "concurrent_calls", False) is True


def thread_setup(client: object) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """What a worker thread runs inside: the client's own session for that thread, if the
    client offers one (:meth:`connector.ci.client.CIClient.worker_session`)."""
    setup = getattr(client, "worker_session", None)
    if callable(setup):
        return cast("Callable[[], contextlib.AbstractContextManager[Any]]", setup)
    return contextlib.nullcontext


class CallPool:
    """Up to ``workers`` calls in flight, each thread inside ``setup()`` for its whole life.

    :meth:`submit` returns a :class:`concurrent.futures.Future`; threads start on demand.
    Use as a context manager: leaving the block normally waits for the calls still queued or
    running; leaving it with an exception cancels the queued ones, cuts the running ones short
    (their scope is cancelled) and joins every thread.
    """

    def __init__(
        self,
        workers: int,
        setup: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        name: str = "ci-call",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.workers = workers
        self.scope = CallScope()
        # A child of the caller's scope, if it runs in one (a worker's job): cancelling that
        # one (the worker stopping) cuts the pool's calls short too.
        self._parent = current_scope()
        self._link = cast(CallGuard, _Cascade(self.scope))
        if self._parent is not None:
            self._parent.enter(self._link)
        self._setup = setup
        self._name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._pending: list[Future[Any]] = []

    def start(self) -> None:
        """Start every worker thread now rather than one per call as calls come."""
        while len(self._threads) < self.workers:
            self._start_thread()

    def submit(self, fn: Callable[..., R], *args: Any) -> Future[R]:
        future: Future[R] = Future()
        context = contextvars.copy_context()  # the caller's budget goes along
        # Only calls not done yet are kept (a done one may hold a whole page).
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(future)
        self._jobs.put((future, context, fn, args))
        if len(self._threads) < self.workers:
            self._start_thread()
        return future

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{len(self._threads) + 1}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        try:
            with self._setup():
                self._serve(None)
        except BaseException as exc:  # the setup itself failed: every job gets its error
            self._serve(exc)

    def _serve(self, broken: BaseException | None) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            future, context, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            if broken is not None:
                future.set_exception(broken)
                continue
            try:
                result = context.run(self._in_scope, fn, args)
            except BaseException as exc:  # handed to the caller, who re-raises it
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _in_scope(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with self.scope.active():
            return fn(*args)

    def close(self, *, abort: bool = False) -> None:
        """End the pool: with ``abort``, cancel what has not started and cut the running calls
        short; then join every thread."""
        if abort:
            for future in self._pending:
                future.cancel()
            self.scope.cancel()
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._threads = []
        self._pending = []
        if self._parent is not None:
            self._parent.leave(self._link)

    def __enter__(self) -> CallPool:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)


class _Cascade:
    """Stands in a scope as one of its calls (``CallScope`` fires ``_fire`` of each on
    cancel) and cancels another scope when fired."""

    def __init__(self, scope: CallScope) -> None:
        self.scope = scope

    def _fire(self) -> None:
        self.scope.cancel()


@contextlib.contextmanager
def closing_iter(items: Iterable[T]) -> Iterator[Iterator[T]]:
    """Iterate ``items`` and close it (a generator: its prefetch thread joined) on the way
    out, also when the loop body raises."""
    it = iter(items)
    try:
        yield it
    finally:
        close = getattr(it, "close", None)
        if callable(close):
            close()


HEAD_START_SECONDS = 0.01
"""How long :func:`prefetch` waits at most, per item, for the worker to have sent the request
of the next item before it hands the current one over."""


def prefetch(
    items: Iterable[T],
    setup: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Iterator[T]:
    """Yield ``items`` in order while the next one is produced on a worker thread.

    At most one item ahead: the next item is asked for only when the current one is handed
    over, so the caller holds item N while item N+1 is read, never more. An exception raised
    producing an item is raised here, at that item's turn (after every earlier item was
    handed over), the same exception as without prefetch. Closing the generator early (or an
    exception in the caller's loop) cuts the read in flight short and joins the thread.
    """
    source = iter(items)
    done = object()

    def step(written: threading.Event) -> Any:
        try:
            with on_request_written(written.set):
                return next(source, done)
        finally:
            written.set()  # no request made (or it failed): the caller waits no longer

    try:
        with CallPool(1, setup, name="ci-prefetch") as pool:
            ahead = pool.submit(step, threading.Event())
            while True:
                item = ahead.result()
                if item is done:
                    return
                written = threading.Event()
                ahead = pool.submit(step, written)  # page N+1 is read while the caller has page N
                # The caller's work on item N holds the GIL for milliseconds at a time, and the
                # worker, just woken, sent its request only after that (3.6 ms late per page,
                # median of a 100k import: the server idled that long). Until the request is
                # out (or HEAD_START_SECONDS), this thread waits without the GIL.
                written.wait(HEAD_START_SECONDS)
                yield item
    finally:
        # The worker is joined: the source is idle and can be closed from here.
        close = getattr(source, "close", None)
        if callable(close):
            close()
