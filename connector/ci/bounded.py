"""Bounded HTTP reads for the CI and GPN clients: a byte cap and an overall deadline per call.

``requests`` alone bounds neither: ``timeout`` is per socket read (a server dripping one byte
every few seconds never trips it) and ``response.content`` holds whatever the server sends,
decompressed without limit. Here:

* :class:`CallGuard` is the deadline of one call (all its attempts, retries and backoff
  sleeps). A watchdog shuts down every socket the call uses when the deadline passes, so a
  blocked read returns at once, whichever phase (headers, body, TLS) it was in. One watchdog
  thread serves every guard of the process (a thread per call cost ~1 ms a call to start).
* :class:`BoundedAdapter` is an ``HTTPAdapter`` whose connections report their sockets to the
  current thread's guard.
* :func:`on_request_written` tells a caller when its request is out (the guarded
  connections call :func:`notify_request_written` once it is written).
* :func:`read_body` reads the raw wire bytes itself (``decode_content=False``), counts them,
  and decompresses gzip/deflate with ``max_length``, so neither a huge body nor a gzip bomb
  gets past ``limit`` bytes in memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from heapq import heapify, heappop, heappush
from itertools import count
from os import getpid, register_at_fork
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool, port_by_scheme
from urllib3.exceptions import InvalidHeader
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from .session import _CACHE_LIMIT, sets_cookies

__all__ = [
    "ACCEPT_ENCODING",
    "BodyBroken",
    "BodyTooLarge",
    "BoundedAdapter",
    "BoundedRetry",
    "CallGuard",
    "CallScope",
    "DeadlineExceeded",
    "UnsupportedEncoding",
    "current_guard",
    "current_scope",
    "host_port",
    "location_host",
    "notify_request_written",
    "on_request_written",
    "read_body",
]

ACCEPT_ENCODING = "gzip, deflate"
"""What the clients ask for; any other ``Content-Encoding`` in an answer is refused."""

_CHUNK = 64 * 1024
_local = threading.local()


class DeadlineExceeded(Exception):
    """The call's overall deadline passed."""


class BodyTooLarge(Exception):
    """The answer is bigger than the cap (on the wire or decompressed)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(f"answer larger than {limit} bytes ({what})")
        self.limit = limit


class UnsupportedEncoding(Exception):
    """A ``Content-Encoding`` the client did not ask for, or a body it cannot decode."""


class BodyBroken(Exception):
    """The connection broke while the body was read."""


class _WatchdogTimer:
    """What ``threading.Timer(seconds, guard._fire)`` did for a guard, served by the process's
    one watchdog thread: :meth:`start` watches the guard's deadline, :meth:`cancel` ends it."""

    def __init__(self, guard: CallGuard) -> None:
        self.guard = guard
        self.active = False
        self.daemon = True  # the watchdog thread is a daemon (kept for Timer's interface)

    def start(self) -> None:
        self.active = True
        _watchdog().watch(self)

    def cancel(self) -> None:
        self.active = False  # dropped lazily by the watchdog, never fired now
        _watchdog().forget()


class _Watchdog:
    """One daemon thread firing the guards whose deadline passed, earliest first.

    Timers cancelled before their deadline are dropped lazily; the heap is compacted when they
    are the majority."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _WatchdogTimer]] = []
        self._order = count()
        self._ended = 0
        self._thread = threading.Thread(target=self._run, name="ci-deadline-watchdog", daemon=True)
        self._thread.start()

    def watch(self, timer: _WatchdogTimer) -> None:
        with self._cond:
            heappush(self._heap, (timer.guard.deadline, next(self._order), timer))
            if self._heap[0][2] is timer:
                self._cond.notify()

    def forget(self) -> None:
        with self._cond:
            self._ended += 1
            if self._ended > 1024 and self._ended * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2].active]
                heapify(self._heap)
                self._ended = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                due: list[CallGuard] = []
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    timer = heappop(self._heap)[2]
                    if timer.active:
                        due.append(timer.guard)
                if not due:
                    wait = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(wait)
                    continue
            for guard in due:  # outside the lock: shutting sockets down may block briefly
                guard._fire()


_WATCHDOG: _Watchdog | None = None
_WATCHDOG_PID = 0
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> _Watchdog:
    """The process's watchdog, started on first use (again in a forked child)."""
    global _WATCHDOG, _WATCHDOG_PID
    dog = _WATCHDOG
    if dog is not None and getpid() == _WATCHDOG_PID:
        return dog
    with _WATCHDOG_LOCK:
        if _WATCHDOG is None or getpid() != _WATCHDOG_PID:
            _WATCHDOG = _Watchdog()
            _WATCHDOG_PID = getpid()
        return _WATCHDOG


def _after_fork_in_child() -> None:
    # The parent's watchdog thread does not exist here, and its lock may have been held.
    global _WATCHDOG, _WATCHDOG_LOCK
    _WATCHDOG = None
    _WATCHDOG_LOCK = threading.Lock()


register_at_fork(after_in_child=_after_fork_in_child)


class CallGuard:
    """The overall deadline of one call; use as a context manager on the calling thread.

    While active, :class:`BoundedAdapter` connections attach their sockets; when ``seconds``
    pass, every attached socket is shut down (a duplicate descriptor is kept for that, so a
    socket already handed back to the pool is never confused with another one).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, seconds)
        self.deadline = time.monotonic() + self.seconds
        self.fired = False
        self._lock = threading.Lock()
        self._dups: list[socket.socket] = []
        self._timer = _WatchdogTimer(self)
        self._previous: CallGuard | None = None
        # Set when the deadline fires: ends pause() early. Made by the first pause (under the
        # lock, before the guard fired): most calls never wait, and an Event with its
        # Condition was a third of a guard's cost per call.
        self._woken: threading.Event | None = None
        self._scope: CallScope | None = None

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def check(self) -> None:
        """:raises DeadlineExceeded: if the deadline passed."""
        if self.expired:
            raise DeadlineExceeded(f"deadline of {self.seconds:g} s passed")

    def sleep(self, seconds: float) -> None:
        """A backoff sleep that never outlasts the deadline.

        :raises DeadlineExceeded: when the sleep would end past the deadline.
        """
        if seconds >= self.remaining():
            raise DeadlineExceeded(f"deadline of {self.seconds:g} s passed")
        time.sleep(seconds)

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the guard fires (deadline or cancelled scope).

        :raises DeadlineExceeded: when it fired.
        """
        if seconds > 0:
            with self._lock:
                woken = self._woken
                if woken is None and not self.fired:
                    woken = self._woken = threading.Event()
            if woken is not None:  # None: it fired already, check() says so
                woken.wait(seconds)
        self.check()

    def attach(self, sock: Any) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it already has)."""
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except (OSError, AttributeError, ValueError):
            return
        with self._lock:
            self._dups.append(dup)
            fired = self.fired
        if fired:
            _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            dups = list(self._dups)
            woken = self._woken
        if woken is not None:  # a pause is (or was) waiting on it
            woken.set()
        for dup in dups:
            _shutdown(dup)

    def __enter__(self) -> CallGuard:
        self._previous = getattr(_local, "guard", None)
        _local.guard = self
        self._timer.start()
        self._scope = _scope.get()
        if self._scope is not None:
            self._scope.enter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        if self._scope is not None:
            self._scope.leave(self)
        _local.guard = self._previous
        with self._lock:
            dups, self._dups = self._dups, []
        for dup in dups:
            with contextlib.suppress(OSError):
                dup.close()


class CallScope:
    """A set of calls that can be cut short together: :meth:`cancel` fires the guard of every
    call running inside the scope (its sockets are shut down, its backoff wait ends) and every
    later call in it fails at once. Worker threads run their calls inside one, so a stop or an
    error on the thread that owns them does not wait for a slow server before the workers end.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._guards: set[CallGuard] = set()
        self.cancelled = False

    def enter(self, guard: CallGuard) -> None:
        with self._lock:
            self._guards.add(guard)
            cancelled = self.cancelled
        if cancelled:
            guard._fire()

    def leave(self, guard: CallGuard) -> None:
        with self._lock:
            self._guards.discard(guard)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            guards = list(self._guards)
        for guard in guards:
            guard._fire()

    @contextlib.contextmanager
    def active(self) -> Any:
        """Make this the scope of the calls made inside the block (this context only)."""
        token = _scope.set(self)
        try:
            yield self
        finally:
            _scope.reset(token)


_scope: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "connector_call_scope", default=None
)


def current_scope() -> CallScope | None:
    """The scope calls made here belong to, if any."""
    return _scope.get()


_written: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "connector_request_written", default=None
)


@contextlib.contextmanager
def on_request_written(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` each time a request made in this block (this context) has been
    written to its connection, before its answer is awaited. For a caller that hands the
    GIL to the thread making the call until its request is out (see
    :func:`connector.overlap.prefetch`)."""
    token = _written.set(callback)
    try:
        yield
    finally:
        _written.reset(token)


def notify_request_written() -> None:
    """A request is out: call the callback of the enclosing :func:`on_request_written`
    block, if any (the guarded connections call this; so may a stand-in client)."""
    callback = _written.get()
    if callback is not None:
        callback()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def current_guard() -> CallGuard | None:
    """The guard of the call running on this thread, if any."""
    guard: CallGuard | None = getattr(_local, "guard", None)
    return guard


def _no_drain(response: Any) -> Any:
    # urllib3 drains the body of an answer it is about to retry (a 503, a 429) to reuse the
    # connection; a hostile 503 may be endless, so the connection is closed instead.
    response.drain_conn = response.close
    return response


ONE_SEGMENT_BYTES = 64 * 1024
"""A request whose body is at most this long leaves in one ``sendall`` with its headers."""


def _body_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return kwargs["body"] if "body" in kwargs else (args[2] if len(args) > 2 else None)


def _one_segment(body: Any, kwargs: dict[str, Any]) -> bool:
    """Whether the header block waits for the body (see :meth:`_GuardedHTTPConnection.send`)."""
    return (
        isinstance(body, bytes | str)
        and 0 < len(body) <= ONE_SEGMENT_BYTES
        and not kwargs.get("chunked")
    )


class _GuardedHTTPConnection(HTTPConnection):
    # http.client sends the header block and the body in two sendall calls: two segments,
    # and a server woken by the first reads the headers, then waits for the body (one more
    # wake-up per call on each side). A small body is sent with its headers instead.
    _held: bytes | None = None
    _joining = False

    def getresponse(self) -> Any:
        return _no_drain(super().getresponse())

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        guard = current_guard()
        if guard is not None:
            guard.attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        guard = current_guard()
        if guard is not None and self.sock is not None:  # a kept-alive connection
            guard.attach(self.sock)
        self._joining, self._held = _one_segment(_body_of(args, kwargs), kwargs), None
        try:
            super().request(*args, **kwargs)
            held = self._held
        finally:
            self._joining, self._held = False, None
        if held is not None:  # no body went after all: the headers alone
            self.send(held)
        notify_request_written()

    def send(self, data: Any) -> None:
        if self._joining:
            if self._held is None:
                self._held = bytes(data)  # the header block: sent with the body
                return
            data, self._held, self._joining = self._held + bytes(data), None, False
        super().send(data)


class _GuardedHTTPSConnection(_GuardedHTTPConnection, HTTPSConnection):
    """The same guards over TLS, in front of ``HTTPSConnection`` in the method order: the
    descriptor survives the TLS wrap (the handshake is covered), and a joined header block
    and body go out as one TLS record."""


class _GuardedPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_POOLS = {"http": _GuardedPool, "https": _GuardedHTTPSPool}


class BoundedAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connections attach their sockets to the current :class:`CallGuard`.

    Per call it also skips what ``requests`` works out again for every call, with the same
    outcome: the request line of a URL (without a proxy) is remembered (it parsed the URL
    twice for it); so is the key of the URL's connection pool (parsing the URL and
    normalising the key, ~25 us a call), and the pool is asked of the pool manager by that
    key, as ``requests`` does at the end (a pool the manager dropped is made again the usual
    way); and an answer that sets no cookie is not searched for cookies (a parse of the URL
    and a mock request and response per call)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._paths: dict[str, str] = {}  # URL -> request line, without a proxy
        # (URL, verify, cert) -> (pool manager, pool key), without a proxy
        self._pool_keys: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        super().__init__(*args, **kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:  # a pickled adapter
        self._paths, self._pool_keys = {}, {}
        super().__setstate__(state)  # type: ignore[misc]  # requests has it (not its stubs)

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        if type(verify) is bool:
            flavour: Any = verify
        elif isinstance(verify, str):  # a CA bundle (REQUESTS_CA_BUNDLE): a file or a directory
            flavour = (verify, os.path.isdir(verify))  # requests asks the disk on every call too
        else:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        try:
            key = (request.url, flavour, cert)
            known = self._pool_keys.get(key)
        except TypeError:  # an unhashable cert: requests' own path
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        manager = self.poolmanager
        if known is not None and known[0] is manager:
            # PoolManager.connection_from_pool_key's own look-up (it marks the pool recent).
            pool = manager.pools.get(known[1])
            if pool is not None:
                return pool
        pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
        pool_key = self._pool_key(request, verify, cert)
        # Kept only if the manager holds this very pool under it (else asked anew each time).
        if pool_key is not None and manager.pools.get(pool_key) is pool:
            if len(self._pool_keys) >= _CACHE_LIMIT:
                self._pool_keys.clear()
            self._pool_keys[key] = (manager, pool_key)
        return pool

    def _pool_key(self, request: Any, verify: Any, cert: Any) -> Any:
        """The key ``PoolManager.connection_from_host`` computes for the request's pool
        (``None`` if it cannot be worked out here)."""
        try:
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(
                request, verify, cert
            )
            manager = self.poolmanager
            context = manager._merge_pool_kwargs(pool_kwargs)
            scheme = host_params["scheme"] or "http"
            port = host_params["port"]
            context["scheme"] = scheme
            context["port"] = port_by_scheme.get(scheme.lower(), 80) if port is None else port
            context["host"] = host_params["host"]
            return manager.key_fn_by_scheme[scheme.lower()](context)
        except Exception:  # no key: the pool is asked for the usual way
            return None

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def request_url(self, request: Any, proxies: Any) -> str:
        url = request.url
        if proxies or not isinstance(url, str):
            return str(super().request_url(request, proxies))
        path = self._paths.get(url)
        if path is None:  # the path and query of the URL: nothing else decides it here
            path = str(super().request_url(request, proxies))
            if len(self._paths) >= _CACHE_LIMIT:
                self._paths.clear()
            self._paths[url] = path
        return path

    def build_response(self, req: Any, resp: Any) -> requests.Response:
        if sets_cookies(resp):
            return super().build_response(req, resp)
        # requests' build_response, step for step, but for extract_cookies_to_jar (which
        # finds nothing in such an answer: response.cookies stays the empty jar it is).
        response = requests.Response()
        response.status_code = getattr(resp, "status", None)  # type: ignore[assignment]
        response.headers = CaseInsensitiveDict(getattr(resp, "headers", {}))
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = response.raw.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url
        response.request = req
        response.connection = self
        return response

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def bounded_sleep(seconds: float) -> None:
    """Sleep, but never past the current call's deadline.

    :raises DeadlineExceeded: when the sleep would end past it.
    """
    guard = current_guard()
    if guard is not None and seconds >= guard.remaining():
        raise DeadlineExceeded("the backoff would end past the deadline")
    if seconds > 0:
        time.sleep(seconds)


class BoundedRetry(Retry):
    """urllib3 ``Retry`` whose waits are capped (``Retry-After`` at ``retry_after_cap``; an
    unreadable one falls back to the backoff) and never outlast the call's deadline."""

    retry_after_cap: float = 60.0

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0.0
        return min(seconds, self.retry_after_cap)

    def sleep_for_retry(self, response: BaseHTTPResponse) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after:
            bounded_sleep(retry_after)
            return True
        return False

    def _sleep_backoff(self) -> None:
        bounded_sleep(self.get_backoff_time())


def location_host(response: requests.Response) -> str:
    """The host a redirect points at (never the rest of the URL: it may carry a token)."""
    location = response.headers.get("Location", "")
    return host_port(location) or ("(relative)" if location else "(no Location header)")


def host_port(url: str) -> str:
    """``host`` or ``host:port`` of ``url`` (no user info, path or query), or ``""``."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if not host:
        return ""
    return f"{host}:{port}" if port else host


def read_body(response: requests.Response, limit: int, guard: CallGuard | None = None) -> bytes:
    """Read the whole body of a ``stream=True`` response, at most ``limit`` bytes on the wire
    and at most ``limit`` bytes decompressed.

    :raises BodyTooLarge: past the cap (the rest is not read; the connection is closed).
    :raises UnsupportedEncoding: a ``Content-Encoding`` other than gzip/deflate/identity, or
        a body that does not decompress.
    :raises DeadlineExceeded: the guard's deadline passed while reading.
    :raises BodyBroken: the connection broke mid-body.
    """
    try:
        return _read(response, limit, guard)
    except (BodyTooLarge, UnsupportedEncoding, DeadlineExceeded):
        response.close()
        raise
    except Exception as exc:
        response.close()
        if guard is not None and guard.expired:
            raise DeadlineExceeded(f"deadline of {guard.seconds:g} s passed") from None
        raise BodyBroken(f"{type(exc).__name__} while reading the answer") from None


def _decoder(encoding: str) -> Any:
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header, detected
    raise UnsupportedEncoding(f"Content-Encoding {name[:40]!r} was not asked for")


def _read(response: requests.Response, limit: int, guard: CallGuard | None) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, f"Content-Length says {int(declared)}")
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    out = bytearray()
    wire = 0
    raw = response.raw
    while True:
        if guard is not None:
            guard.check()
        chunk = raw.read(_CHUNK, decode_content=False)
        if not chunk:
            break
        wire += len(chunk)
        if wire > limit:
            raise BodyTooLarge(limit, "on the wire")
        if decoder is None:
            out += chunk
            continue
        _inflate(decoder, chunk, out, limit)
    if guard is not None:
        guard.check()
    if decoder is not None:
        try:
            out += decoder.flush()
        except zlib.error:
            raise UnsupportedEncoding("compressed body is corrupt") from None
        if len(out) > limit:
            raise BodyTooLarge(limit, "decompressed")
    return bytes(out)


def _inflate(decoder: Any, data: bytes, out: bytearray, limit: int) -> None:
    try:
        while data:
            # max_length >= 1 always (0 would mean "no limit" to zlib).
            out += decoder.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise BodyTooLarge(limit, "decompressed")
            data = decoder.unconsumed_tail
            if decoder.eof and decoder.unused_data:
                raise UnsupportedEncoding("data after the end of the compressed body")
    except zlib.error:
        raise UnsupportedEncoding("compressed body is corrupt") from None
