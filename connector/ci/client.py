"""HTTP client for Groupon's CommerceInterface (CI) supplier API, on ``requests``.

Transport retries (429, 5xx, connection errors, timeouts) are urllib3's ``Retry`` on the
session's adapter, with exponential backoff, jitter and a capped ``Retry-After``. Every CI call
is safe to repeat (re-marking is harmless, an identical tracking re-send is a no-op), so POST is
retried too. Answers that are not CI's JSON envelope (HTML pages, truncated JSON) are retried a
few times here, since urllib3 cannot see them.

The token rides in the query string of every GET. It never appears in an exception message, a
log line (ours are redacted; urllib3's are filtered), ``repr(client)`` or :attr:`CIClient.stats`.

Hostile answers are bounded (:mod:`connector.ci.bounded`): redirects are never followed (a 3xx
is a protocol error naming only the Location host, so the token goes nowhere but the configured
host); the body is capped at ``max_response_bytes`` on the wire and decompressed; every call
has an overall deadline (attempts, retries and backoff sleeps together) and :meth:`budget`
gives a whole read one more; a listing stops with :class:`CILimitError` past ``max_pages`` or
``max_items``. ``max_retries = 0`` means exactly one request per call.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

import msgspec
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InvalidHeader,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from connector.errors import (
    CIAuthError,
    CIBusinessError,
    CILimitError,
    CIProtocolError,
    CITransportError,
)
from connector.models import Account
from connector.secrets import Secret, install_log_redaction, redact

from .bounded import (
    ACCEPT_ENCODING,
    BodyBroken,
    BodyTooLarge,
    BoundedAdapter,
    CallGuard,
    DeadlineExceeded,
    UnsupportedEncoding,
    current_guard,
    host_port,
    location_host,
    read_body,
)
from .session import FORM_CONTENT_TYPE, EnvOnceSession, form_body
from .throttle import Throttle, shared_throttle

__all__ = [
    "PAGE_SIZE",
    "RETRY_AFTER_CAP",
    "CIClient",
    "ClientStats",
    "LineitemTrackingItem",
    "OrdersPage",
    "PageMeta",
    "TrackingItem",
]

log = logging.getLogger(__name__)

# The sync budget of each client (by id) in force in this context. A context variable, not a
# thread-local: work handed to a worker thread in a copy of the caller's context (the page
# prefetch) stays inside the caller's budget.
_budgets: contextvars.ContextVar[dict[int, tuple[float, str]] | None] = contextvars.ContextVar(
    "ci_client_budgets", default=None
)

PAGE_SIZE = 250
"""CI's fixed page size (ci-api.md §3)."""

RETRY_AFTER_CAP = 60.0
"""Longest ``Retry-After`` honoured, in seconds: a hostile header must not stall a sync."""

BACKOFF_MAX = 30.0
"""Longest computed backoff between two attempts, in seconds."""

WINDOW_FORMAT = "%m/%d/%Y %H:%M"
"""``start_datetime``/``end_datetime`` format, UTC (ci-api.md §3)."""

READ_VERSIONS = frozenset({"v2", "v3", "v4"})
WRITE_VERSIONS = frozenset({"v2", "v4"})  # v3 documents no write endpoint

RETRY_STATUSES = (429, 500, 502, 503, 504)

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""Default cap of one answer, on the wire and decompressed (a full 250-line page is ~0.5 MB)."""

CALL_DEADLINE = 120.0
"""Default overall deadline of one call, seconds (all attempts, retries and sleeps)."""

MAX_PAGES = 400
"""Default cap of pages read in one listing (100,000 lines at 250 a page)."""

MAX_ITEMS = 100_000
"""Default cap of records read in one listing."""

# Reasons CI gives when the supplier id / token pair is wrong. Evidence is thin (ci-api.md §4),
# so this is deliberately broad about credentials and narrow about anything else.
_SPARE_SESSIONS = 16
"""Worker sessions a client keeps between worker blocks (``ack_concurrency`` is at most 16)."""

_AUTH_REASON = re.compile(
    r"(?i)token|credential|unauthori[sz]ed|authenticat|forbidden|access denied|"
    r"supplier[_ ]?id|api[_ ]?key|permission"
)


# --- public data types -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageMeta:
    """``meta`` of a ``get_orders`` answer. ``0/0`` counters mean "nothing matches"."""

    no_of_pages: int
    current_page: int
    max_items_per_page: int
    no_of_items: int


@dataclass(frozen=True, slots=True)
class OrdersPage:
    """One ``get_orders`` page: its counters and the raw JSON records (parse them with
    :func:`connector.ci.schemas.parse_record`, which also reports non-object elements).

    ``plain_json``: the page was decoded by msgspec, which refuses NaN, infinities and lone
    surrogates, so every record holds JSON values only (valid-unicode text, ints, finite
    floats, booleans, null, lists, objects) and re-encodes to JSON that reads back equal to
    it. False when the standard decoder read it (or the page was built by hand).

    A page read by :meth:`CIClient.iter_raw_pages` with ``plain_json`` holds each record as
    ``msgspec.Raw``: its exact bytes in the body, valid JSON and UTF-8 (see
    ``_orders_object``; decode one with :func:`connector.ci.fast.raw_value`)."""

    meta: PageMeta
    records: list[Any]
    plain_json: bool = False


@dataclass(frozen=True, slots=True)
class TrackingItem:
    """One ``tracking_notification`` element, keyed by CI's line id."""

    ci_lineitemid: int
    carrier: str
    tracking: str
    quantity: int | None = None


@dataclass(frozen=True, slots=True)
class LineitemTrackingItem:
    """One ``lineitem_tracking_notification`` element (v4), keyed by Groupon's line id."""

    fulfillment_lineitem_id: str
    carrier: str
    tracking: str
    quantity: int | None = None


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of what a client did.

    :ivar calls: HTTP attempts made by the client per endpoint (urllib3's own retries are
        counted in ``retries``, not here).
    :ivar retries: retries per reason: the HTTP status (``"429"``, ``"503"``), the transport
        failure (``"ConnectionError"``, ``"ConnectTimeout"``, ``"ReadTimeout"``) or
        ``"protocol"`` (an answer that was not CI's JSON envelope).
    :ivar protocol_errors: answers that were not CI's JSON envelope.
    :ivar failures: calls that ended in an exception, per exception class name.
    """

    calls: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    protocol_errors: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def total_retries(self) -> int:
        return sum(self.retries.values())


class _StatsRecorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._protocol_errors = 0

    def call(self, endpoint: str) -> None:
        with self._lock:
            self._calls[endpoint] += 1

    def retry(self, reason: str) -> None:
        with self._lock:
            self._retries[reason] += 1

    def failure(self, kind: str) -> None:
        with self._lock:
            self._failures[kind] += 1

    def protocol_error(self) -> None:
        with self._lock:
            self._protocol_errors += 1

    def snapshot(self) -> ClientStats:
        with self._lock:
            return ClientStats(
                dict(self._calls), dict(self._retries), self._protocol_errors, dict(self._failures)
            )


# --- urllib3 retry with accounting -----------------------------------------------------------


def _retry_reason(response: BaseHTTPResponse | None, error: Exception | None) -> str:
    if error is not None:
        if isinstance(error, NewConnectionError):
            return "ConnectionError"
        if isinstance(error, ConnectTimeoutError):
            return "ConnectTimeout"
        if isinstance(error, ReadTimeoutError):
            return "ReadTimeout"
        if isinstance(error, ProtocolError):  # connection reset / closed mid-answer
            return "ConnectionError"
        return type(error).__name__
    if response is not None and response.status:
        return str(response.status)
    return "unknown"


class _CountingRetry(Retry):
    """``Retry`` that reports each retry's reason, caps ``Retry-After`` on any urllib3 2.x and
    sleeps through an injectable function (tests assert the wait instead of waiting)."""

    on_retry: Callable[[str], None] | None = None
    on_retry_after: Callable[[float], None] | None = None
    retry_after_cap: float = RETRY_AFTER_CAP
    sleeper: Callable[[float], None] = staticmethod(time.sleep)

    def new(self, **kw: Any) -> Self:
        fresh = super().new(**kw)
        fresh.on_retry = self.on_retry
        fresh.on_retry_after = self.on_retry_after
        fresh.retry_after_cap = self.retry_after_cap
        fresh.sleeper = self.sleeper
        return fresh

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        fresh = super().increment(method, url, response, error, _pool, _stacktrace)
        # Only reached when another attempt will be made (exhaustion raises above).
        if self.on_retry is not None:
            self.on_retry(_retry_reason(response, error))
        return fresh

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0.0  # unreadable header: fall back to the exponential backoff
        return min(seconds, self.retry_after_cap)

    def sleep_for_retry(self, response: BaseHTTPResponse) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after:
            if self.on_retry_after is not None:
                self.on_retry_after(retry_after)  # the client's other threads wait too
            self.sleeper(retry_after)
            return True
        return False

    def _sleep_backoff(self) -> None:
        backoff = self.get_backoff_time()
        if backoff > 0:
            self.sleeper(backoff)


class _ProtocolProblem(Exception):
    """Internal: the answer was not CI's JSON envelope (retried, then CIProtocolError)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    """An HTTP answer read whole, within the caps."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class _BrokenAnswer(Exception):
    """Internal: the connection broke while the answer's body was being read (urllib3 had
    already returned the response, so its ``Retry`` never sees this); retried like a protocol
    problem, then CITransportError."""


# --- the client ------------------------------------------------------------------------------


class CIClient:
    """One CI supplier account.

    Thread-safe (:attr:`concurrent_calls`): every thread makes its calls through an HTTP
    session of its own (``requests.Session`` is not thread-safe). The thread that built the
    client uses the session it was given or made; a worker thread gets one inside
    :meth:`worker_session` (or a lazily made one), with the same retrying, bounded adapter.
    Calls, retries and the throttle are shared across threads.

    :param base_url: CI host, e.g. ``https://scm.commerceinterface.com``.
    :param supplier_id: the account's supplier id.
    :param token: the account's token (a plain ``str`` is wrapped in a :class:`Secret`).
    :param api_version: ``"v2"``, ``"v3"`` (reads only) or ``"v4"``.
    :param timeout: connect and read timeout of one HTTP attempt, seconds.
    :param max_retries: transport retries per call (429, 5xx, connection errors, timeouts).
    :param backoff: base of the exponential backoff (urllib3 ``backoff_factor``); also the jitter.
    :param requests_per_second: client-side throttle (0 = off).
    :param session: a ``requests.Session`` to use; if its adapter for ``base_url`` is a plain,
        retry-less ``HTTPAdapter``, the client mounts its own retrying adapter for that prefix,
        otherwise the session is used as is. The client never closes a session it was given.
    :param protocol_retries: extra attempts after an answer that is not CI's JSON envelope or
        whose body was cut off; default ``min(2, max_retries)`` (so ``max_retries=0`` makes
        exactly one request).
    :param max_response_bytes: cap of one answer, on the wire and decompressed.
    :param call_deadline: overall deadline of one call in seconds (attempts, retries, sleeps).
    :param max_pages: most pages one listing may have (checked on page 1's counters too).
    :param max_items: most records one listing may have.
    :param retry_after_cap: longest ``Retry-After`` honoured, seconds.
    :param sleep: sleep function for backoffs (tests inject a recorder).
    :param throttle: an explicit throttle (overrides ``requests_per_second``).
    """

    concurrent_calls = True
    """Calls may run on several threads at once (the importer and dispatcher check this)."""

    def __init__(
        self,
        *,
        base_url: str,
        supplier_id: str,
        token: Secret,
        api_version: str = "v4",
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        requests_per_second: float = 0.0,
        session: requests.Session | None = None,
        protocol_retries: int | None = None,
        retry_after_cap: float = RETRY_AFTER_CAP,
        sleep: Callable[[float], None] = time.sleep,
        throttle: Throttle | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        call_deadline: float = CALL_DEADLINE,
        max_pages: int = MAX_PAGES,
        max_items: int = MAX_ITEMS,
    ) -> None:
        if isinstance(token, str):
            token = Secret(token)
        if not isinstance(token, Secret):
            raise TypeError("token must be a connector.secrets.Secret")
        install_log_redaction()
        if not re.match(r"^https?://[^/\s]+", base_url or ""):
            raise ValueError(f"base_url must be an http(s) URL, got {redact(repr(base_url))}")
        if api_version not in READ_VERSIONS:
            raise ValueError(
                f"api_version must be one of {sorted(READ_VERSIONS)}, got {api_version!r}"
            )
        if not str(supplier_id).strip():
            raise ValueError("supplier_id must not be empty")
        if protocol_retries is None:
            protocol_retries = min(2, max_retries)
        if timeout <= 0 or max_retries < 0 or backoff < 0 or protocol_retries < 0:
            raise ValueError("timeout must be > 0; max_retries, backoff, protocol_retries >= 0")
        if max_response_bytes < 1 or call_deadline <= 0 or max_pages < 1 or max_items < 1:
            raise ValueError(
                "max_response_bytes, max_pages, max_items must be >= 1; call_deadline > 0"
            )

        self.base_url = base_url.rstrip("/")
        self.supplier_id = str(supplier_id).strip()
        self.api_version = api_version
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.protocol_retries = protocol_retries
        self.max_response_bytes = max_response_bytes
        self.call_deadline = float(call_deadline)
        self.max_pages = max_pages
        self.max_items = max_items
        self._local = threading.local()  # per-thread session of worker threads
        self._token = token
        self._sleep = sleep
        self._stats = _StatsRecorder()
        self._throttle = throttle or (
            shared_throttle(f"{self.base_url}|{self.supplier_id}", requests_per_second)
            if requests_per_second > 0
            else Throttle(0)
        )

        retry = _CountingRetry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            other=max_retries,
            redirect=0,  # requests is told not to follow either: a 3xx is an error here
            allowed_methods=frozenset({"GET", "POST"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff,
            backoff_jitter=backoff,
            backoff_max=BACKOFF_MAX,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        retry.on_retry = self._stats.retry
        retry.on_retry_after = self._throttle.hold
        retry.retry_after_cap = retry_after_cap
        retry.sleeper = self._retry_sleep
        self._retry = retry
        adapter = BoundedAdapter(max_retries=retry)
        self._owns_session = session is None
        if session is None:
            session = EnvOnceSession()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        else:
            current = session.get_adapter(self.base_url)
            if (
                type(current) in (HTTPAdapter, BoundedAdapter)
                and not cast("HTTPAdapter", current).max_retries.total
            ):
                session.mount(self.base_url + "/", adapter)
        self._session = session
        self._home = threading.get_ident()
        self._sessions_lock = threading.Lock()
        self._thread_sessions: list[requests.Session] = []
        # Worker sessions between worker_session blocks, kept for the next block (this
        # client's own sessions only): see worker_session.
        self._spare_sessions: list[requests.Session] = []
        self._open = True

    @classmethod
    def for_account(cls, account: Account) -> CIClient:
        """Build the client for a configured account (its URL, credentials, version and
        ``options`` timeout/retries/backoff/throttle). Accounts of one supplier share a throttle."""
        opts = account.options
        return cls(
            base_url=account.base_url,
            supplier_id=account.supplier_id,
            token=account.token,
            api_version=account.api_version,
            timeout=opts.timeout_seconds,
            max_retries=opts.max_retries,
            backoff=opts.backoff_seconds,
            requests_per_second=opts.requests_per_second,
            max_response_bytes=opts.max_response_bytes,
            call_deadline=opts.call_deadline_seconds,
            max_pages=opts.max_pages_per_listing,
            max_items=opts.max_items_per_listing,
        )

    @contextlib.contextmanager
    def budget(self, seconds: float, what: str = "read") -> Iterator[None]:
        """Give every call inside the block (on this thread) one shared deadline as well: each
        call ends by ``min(its own deadline, the budget's end)``. An expired budget raises
        :class:`CILimitError` at the next call."""
        budgets = dict(_budgets.get() or {})
        budgets[id(self)] = (time.monotonic() + seconds, f"{what} deadline of {seconds:g} s")
        token = _budgets.set(budgets)
        try:
            yield
        finally:
            _budgets.reset(token)

    @contextlib.contextmanager
    def worker_session(self) -> Iterator[None]:
        """Give the calling (worker) thread an HTTP session of its own for the block, with the
        same retrying, bounded adapter. Calls on this thread outside such a block use a session
        made on first use (closed by :meth:`close`).

        A client that made its own session keeps a worker's session after the block for the
        next one (at most :data:`_SPARE_SESSIONS`, closed by :meth:`close`): a pool of ack
        workers per hook call otherwise built a session, resolved the environment and opened
        a connection per thread and call, and left the sessions to the garbage collector's
        finalizers on the calling thread (~2% of an import's main thread, issue 11). One
        thread at a time uses a session; a connection a cut-short call broke is dropped by
        urllib3, and one the server closed while idle is replaced, as for the main session.
        A given session's worker sessions copy its settings when made: closed after the block,
        so a later change of those settings is seen."""
        session: requests.Session | None = None
        if self._owns_session:
            with self._sessions_lock:
                if self._spare_sessions:
                    session = self._spare_sessions.pop()
        if session is None:
            session = self._new_session()
        previous = getattr(self._local, "session", None)
        self._local.session = session
        try:
            yield
        finally:
            self._local.session = previous
            kept = False
            if self._owns_session:
                with self._sessions_lock:
                    if self._open and len(self._spare_sessions) < _SPARE_SESSIONS:
                        self._spare_sessions.append(session)
                        kept = True
            if not kept:
                session.close()

    def _new_session(self) -> requests.Session:
        """A fresh session for a worker thread. A client that made its own session mounts a
        fresh bounded adapter (same ``Retry``); one given a session shares that session's
        adapters (urllib3's pools are thread-safe) and copies its settings."""
        session = EnvOnceSession()
        if self._owns_session:
            adapter = BoundedAdapter(max_retries=self._retry)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            return session
        given = self._session
        session.headers.update(given.headers)
        session.auth = given.auth
        session.proxies.update(given.proxies)
        session.verify = given.verify
        session.cert = given.cert
        session.trust_env = given.trust_env
        session.adapters.clear()
        for prefix, shared in given.adapters.items():
            session.mount(prefix, shared)
        return session

    def _session_here(self) -> requests.Session:
        """This thread's session (see the class docstring)."""
        if threading.get_ident() == self._home:
            return self._session
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._new_session()
            with self._sessions_lock:
                self._thread_sessions.append(session)
        return session

    # -- reads ---------------------------------------------------------------------------------

    def get_orders_page(
        self,
        page: int = 1,
        window: tuple[datetime, datetime] | None = None,
        *,
        raw_records: bool = False,
    ) -> OrdersPage:
        """``GET get_orders`` for one page. Without ``window`` CI lists the not-yet-exported
        records; with one (aware datetimes, shorter than 24 h) every record in it.
        ``raw_records``: see :meth:`iter_raw_pages`.

        :raises ValueError: bad page number or window (checked before any call).
        :raises CIError: see the module docstring.
        """
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise ValueError(f"page must be an integer >= 1, got {page!r}")
        params: dict[str, str] = {}
        if window is not None:
            start, end = format_window(window)
            params["start_datetime"] = start
            params["end_datetime"] = end
        params["page"] = str(page)
        body, plain = self._call_json(
            "get_orders",
            "GET",
            params,
            _check_orders_envelope,
            _orders_object if raw_records else _json_object,
        )
        meta = body["meta"]
        return OrdersPage(
            meta=PageMeta(
                no_of_pages=meta["no_of_pages"],
                current_page=meta["current_page"],
                max_items_per_page=meta["max_items_per_page"],
                no_of_items=meta["no_of_items"],
            ),
            records=list(body["data"]),
            plain_json=plain,
        )

    def fetch_all(self, window: tuple[datetime, datetime] | None = None) -> list[OrdersPage]:
        """Read every page of one listing and return them all; marks nothing.

        ``list(iter_pages(window))``: see :meth:`iter_pages` for the stop rules.
        """
        return list(self.iter_pages(window))

    def iter_raw_pages(
        self, window: tuple[datetime, datetime] | None = None
    ) -> Iterator[OrdersPage]:
        """:meth:`iter_pages`, each page's records left as ``msgspec.Raw`` (their exact bytes)
        when msgspec reads the page (``plain_json``), else dicts as :meth:`iter_pages` has
        them. For the import's staging: a record's text is then its bytes, and its typed
        decode reads them straight into Structs (no dict built, no re-encoding)."""
        return self.iter_pages(window, raw_records=True)

    def iter_pages(
        self, window: tuple[datetime, datetime] | None = None, *, raw_records: bool = False
    ) -> Iterator[OrdersPage]:
        """Yield the pages of one listing one at a time (page 1 first); marks nothing.

        The first page's ``no_of_pages`` decides how many pages are read; reading also stops
        at the first empty page and never goes past ``ceil(no_of_items / page size) + 1`` pages
        (the page size as page 1 delivered it: 250 in every capture), so counters that change or
        lie cannot loop. Anomalies are logged as warnings. The caller
        keeps one page at a time; it must read to the end before marking anything (marking
        shifts the un-exported listing).

        Sanity caps: a listing whose page 1 claims more than ``max_pages`` pages or
        ``max_items`` records, or that delivers more records than ``max_items``, stops with
        :class:`CILimitError` before the offending page is yielded (nothing further is staged).
        """
        first = self.get_orders_page(1, window, raw_records=raw_records)
        self._check_items(len(first.records), 1)
        expected = first.meta.no_of_pages
        if expected == 0 or not first.records:
            if first.records or expected > 0:
                log.warning(
                    "CI get_orders anomaly: page 1 has %d records but no_of_pages=%d",
                    len(first.records),
                    expected,
                )
            yield first
            return
        total = len(first.records)
        no_of_items = first.meta.no_of_items
        # Page 1 of a multi-page listing is full, so its length is the real page size; a
        # smaller page than CI's documented 250 must not cut the listing short.
        per_page = len(first.records) if expected > 1 else PAGE_SIZE
        cap = math.ceil(no_of_items / max(1, per_page)) + 1
        if expected > cap:
            log.warning(
                "CI get_orders anomaly: no_of_pages=%d but no_of_items=%d; reading at most %d",
                expected,
                no_of_items,
                cap,
            )
        last = min(expected, cap)
        if last > self.max_pages or no_of_items > self.max_items:
            self._stats.failure("CILimitError")
            raise CILimitError(
                f"CI get_orders: page 1 claims no_of_pages={expected}, no_of_items={no_of_items}, "
                f"more than this account allows in one listing (max_pages_per_listing="
                f"{self.max_pages}, max_items_per_listing={self.max_items}); stopped before "
                "staging anything of it. If the backlog is real, raise those options in "
                "[accounts.options]",
                endpoint="get_orders",
            )
        yield first
        del first  # hold one page at a time
        for number in range(2, last + 1):
            page = self.get_orders_page(number, window, raw_records=raw_records)
            if page.meta.no_of_pages != expected or page.meta.current_page != number:
                log.warning(
                    "CI get_orders anomaly: page %d says current_page=%d, no_of_pages=%d "
                    "(page 1 said %d); keeping page 1's count",
                    number,
                    page.meta.current_page,
                    page.meta.no_of_pages,
                    expected,
                )
            if not page.records:
                log.warning(
                    "CI get_orders anomaly: page %d of %d is empty; stopping", number, expected
                )
                break
            total += len(page.records)
            self._check_items(total, number)
            yield page
            del page
        if total != no_of_items:
            log.warning(
                "CI get_orders anomaly: read %d records, no_of_items said %d",
                total,
                no_of_items,
            )

    def _check_items(self, total: int, page: int) -> None:
        if total > self.max_items:
            self._stats.failure("CILimitError")
            raise CILimitError(
                f"CI get_orders: {total} records by page {page}, more than "
                f"max_items_per_listing={self.max_items} in one listing; stopped before staging "
                "that page. If the backlog is real, raise the option in [accounts.options]",
                endpoint="get_orders",
            )

    # -- writes --------------------------------------------------------------------------------

    def mark_exported(self, ci_lineitemids: Sequence[int]) -> None:
        """``POST mark_exported`` for these line ids. An empty sequence makes no call.

        :raises ValueError: an id is not a positive int; the API version has no writes.
        """
        self._require_write("mark_exported")
        ids = list(ci_lineitemids)
        if not ids:
            return
        if all(type(i) is int for i in ids) and min(ids) > 0:
            # Plain positive ints (the importer's always): json.dumps' text, ~5x faster.
            text = "[" + ",".join(map(str, ids)) + "]"
        else:
            ids = [_positive_int(i, "ci_lineitemid") for i in ids]
            text = json.dumps(ids, separators=(",", ":"))
        self._call("mark_exported", "POST", {"ci_lineitem_ids": text})

    def tracking_notification(self, items: Sequence[TrackingItem]) -> None:
        """``POST tracking_notification``: one element per (line, tracking number).
        An empty sequence makes no call."""
        self._require_write("tracking_notification")
        elements: list[dict[str, Any]] = []
        for item in items:
            element: dict[str, Any] = {
                "carrier": _text(item.carrier, "carrier"),
                "ci_lineitem_id": _positive_int(item.ci_lineitemid, "ci_lineitemid"),
                "tracking": _text(item.tracking, "tracking"),
            }
            if item.quantity is not None:
                element["quantity"] = _positive_int(item.quantity, "quantity")
            elements.append(element)
        if elements:
            self._call(
                "tracking_notification",
                "POST",
                {"tracking_info": json.dumps(elements, separators=(",", ":"))},
            )

    def lineitem_tracking_notification(self, items: Sequence[LineitemTrackingItem]) -> None:
        """``POST lineitem_tracking_notification`` (v4 only), keyed by
        ``fulfillment_lineitem_id``; ``quantity`` ships part of a line."""
        if self.api_version != "v4":
            raise ValueError(
                f"lineitem_tracking_notification exists only on v4, not {self.api_version}"
            )
        elements: list[dict[str, Any]] = []
        for item in items:
            element: dict[str, Any] = {
                "carrier": _text(item.carrier, "carrier"),
                "fulfillment_lineitem_id": _text(
                    str(item.fulfillment_lineitem_id), "fulfillment_lineitem_id"
                ),
                "tracking": _text(item.tracking, "tracking"),
            }
            if item.quantity is not None:
                element["quantity"] = _positive_int(item.quantity, "quantity")
            elements.append(element)
        if elements:
            self._call(
                "lineitem_tracking_notification",
                "POST",
                {"tracking_info": json.dumps(elements, separators=(",", ":"))},
            )

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def stats(self) -> ClientStats:
        """A frozen snapshot of calls, retries per reason and protocol errors."""
        return self._stats.snapshot()

    def close(self) -> None:
        """Close the HTTP session if the client created it, and worker threads' sessions."""
        with self._sessions_lock:
            self._open = False  # a worker block ending later closes its session
            extra, self._thread_sessions = self._thread_sessions, []
            extra += self._spare_sessions
            self._spare_sessions = []
        for session in extra:
            session.close()
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return redact(
            f"CIClient(base_url={self.base_url!r}, supplier_id={self.supplier_id!r}, "
            f"api_version={self.api_version!r}, token={self._token!r})"
        )

    # -- internals -----------------------------------------------------------------------------

    def _require_write(self, endpoint: str) -> None:
        if self.api_version not in WRITE_VERSIONS:
            raise ValueError(f"{endpoint} does not exist on {self.api_version} (use v2 or v4)")

    def _call_seconds(self) -> tuple[float, str]:
        """This call's deadline in seconds, and what sets it (the call's own or the budget)."""
        seconds, what = self.call_deadline, f"call deadline of {self.call_deadline:g} s"
        budget = (_budgets.get() or {}).get(id(self))
        if budget is not None:
            left = budget[0] - time.monotonic()
            if left < seconds:
                seconds, what = left, budget[1]
        return seconds, what

    def _retry_sleep(self, seconds: float) -> None:
        """urllib3's backoff sleeps: never past the current call's deadline."""
        guard = current_guard()
        if guard is not None and seconds >= guard.remaining():
            raise DeadlineExceeded("the backoff would end past the deadline")
        self._pause(seconds, guard)

    def _pause(self, seconds: float, guard: CallGuard | None) -> None:
        if guard is not None and self._sleep is time.sleep:
            guard.pause(seconds)  # ends early when the call's scope is cancelled
        else:
            self._sleep(seconds)  # an injected sleep (tests record the waits)

    def _call(
        self,
        endpoint: str,
        method: str,
        fields: Mapping[str, str],
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        return self._call_json(endpoint, method, fields, check)[0]

    def _call_json(
        self,
        endpoint: str,
        method: str,
        fields: Mapping[str, str],
        check: Callable[[dict[str, Any]], None] | None = None,
        decode: Callable[[bytes], tuple[dict[str, Any] | None, bool]] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """:meth:`_call`, also telling whether msgspec decoded the body (see
        :attr:`OrdersPage.plain_json`); ``decode`` reads the body (``_json_object``)."""
        seconds, what = self._call_seconds()
        if seconds <= 0:
            self._stats.failure("CILimitError")
            raise CILimitError(
                f"CI {endpoint}: the {what} is used up; not calling", endpoint=endpoint
            )
        with CallGuard(seconds) as guard:
            try:
                return self._attempts(
                    endpoint, method, fields, check, guard, decode or _json_object
                )
            except DeadlineExceeded:
                pass
        # Raised outside the handler: nothing of the original exception chain is kept.
        self._stats.failure("CITransportError")
        log.warning("CI %s: no complete answer within the %s", endpoint, what)
        raise CITransportError(
            f"CI {endpoint}: no complete answer within the {what} "
            "(call_deadline_seconds / sync_deadline_seconds; a slow or dripping server)",
            endpoint=endpoint,
        )

    def _attempts(
        self,
        endpoint: str,
        method: str,
        fields: Mapping[str, str],
        check: Callable[[dict[str, Any]], None] | None,
        guard: CallGuard,
        decode: Callable[[bytes], tuple[dict[str, Any] | None, bool]] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        url = f"{self.base_url}/api/{self.api_version}/{endpoint}"
        payload = {"supplier_id": self.supplier_id, "token": self._token.reveal(), **fields}
        problem = ""
        retry_reason = "protocol"
        for attempt in range(self.protocol_retries + 1):
            if attempt:
                self._stats.retry(retry_reason)
                pause = min(BACKOFF_MAX, self.backoff * 2**attempt)
                if pause >= guard.remaining():
                    raise DeadlineExceeded("the backoff would end past the deadline")
                self._pause(pause, guard)
            guard.check()
            self._throttle.acquire()
            self._stats.call(endpoint)
            try:
                answer = self._send(endpoint, method, url, payload, guard)
            except _BrokenAnswer as exc:
                # Every CI call is safe to repeat, so a body lost mid-read is simply re-asked.
                problem, retry_reason = str(exc), "ConnectionError"
                log.warning(
                    "CI %s attempt %d/%d: %s",
                    endpoint,
                    attempt + 1,
                    self.protocol_retries + 1,
                    problem,
                )
                continue
            retry_reason = "protocol"
            try:
                body, plain = self._interpret(endpoint, answer, decode)
                if check is not None:
                    check(body)
                return body, plain
            except _ProtocolProblem as exc:
                problem = str(exc)
                self._stats.protocol_error()
                log.warning(
                    "CI %s attempt %d/%d: %s",
                    endpoint,
                    attempt + 1,
                    self.protocol_retries + 1,
                    problem,
                )
            except (CIBusinessError, CITransportError) as exc:
                self._stats.failure(type(exc).__name__)
                raise
        if retry_reason == "ConnectionError":
            self._stats.failure("CITransportError")
            raise CITransportError(
                f"CI {endpoint}: answer cut off {self.protocol_retries + 1} times: {problem}",
                endpoint=endpoint,
            )
        self._stats.failure("CIProtocolError")
        raise CIProtocolError(
            f"CI {endpoint}: not the JSON envelope after {self.protocol_retries + 1} "
            f"attempts: {problem}",
            endpoint=endpoint,
        )

    def _send(
        self,
        endpoint: str,
        method: str,
        url: str,
        payload: Mapping[str, str],
        guard: CallGuard,
    ) -> _Answer:
        wait = max(0.001, min(self.timeout, guard.remaining()))
        timeouts = (wait, wait)
        started = time.monotonic()
        failure = broken = ""
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        try:
            # Never follow a redirect: the token is in the query string and the POST body.
            if method == "GET":
                response = self._session_here().get(
                    url,
                    params=payload,
                    timeout=timeouts,
                    allow_redirects=False,
                    stream=True,
                    headers=headers,
                )
            else:
                response = self._session_here().post(
                    url,
                    data=form_body(payload),
                    timeout=timeouts,
                    allow_redirects=False,
                    stream=True,
                    headers={**headers, "Content-Type": FORM_CONTENT_TYPE},
                )
        except requests.exceptions.ChunkedEncodingError as exc:
            # Headers arrived, the body did not (connection dropped mid-answer).
            broken = f"{type(exc).__name__}: {redact(str(exc))}"
        except (requests.RequestException, HTTPError) as exc:
            failure = f"{type(exc).__name__}: {redact(str(exc))}"
        if guard.expired:
            raise DeadlineExceeded("deadline passed during the request")
        if broken:
            raise _BrokenAnswer(broken)
        if failure:
            # Raised outside the except block so the original exception (whose message holds
            # the URL with the token) is neither the cause nor the context of ours.
            self._stats.failure("CITransportError")
            log.warning("CI %s failed after retries: %s", endpoint, failure)
            raise CITransportError(
                f"CI {endpoint}: no answer after {self.max_retries} retries: {failure}",
                endpoint=endpoint,
            )
        status = response.status_code
        if 300 <= status < 400:
            host = location_host(response)
            response.close()
            self._stats.failure("CIProtocolError")
            raise CIProtocolError(
                f"CI {endpoint}: HTTP {status} redirect to host {redact(host)!r} refused "
                f"(the client only talks to {host_port(self.base_url)}; check base_url)",
                endpoint=endpoint,
            )
        if status == 429 or status >= 500:
            # Only the status matters (retries are over): a hostile 503 body is never read.
            response.close()
            return _Answer(status, response.headers, b"")
        content = self._read(endpoint, response, guard)
        if log.isEnabledFor(logging.DEBUG):  # the redaction's regexes only when it is logged
            log.debug(
                "CI %s %s -> HTTP %d, %d bytes in %.3fs",
                method,
                redact(response.url),
                status,
                len(content),
                time.monotonic() - started,
            )
        return _Answer(status, response.headers, content)

    def _read(self, endpoint: str, response: requests.Response, guard: CallGuard) -> bytes:
        problem = ""
        try:
            return read_body(response, self.max_response_bytes, guard)
        except BodyBroken as exc:
            raise _BrokenAnswer(str(exc)) from None
        except BodyTooLarge as exc:
            problem = (
                f"CI {endpoint}: HTTP {response.status_code} {exc}; refused and not read "
                f"further (max_response_bytes={self.max_response_bytes})"
            )
        except UnsupportedEncoding as exc:
            problem = f"CI {endpoint}: HTTP {response.status_code}: {exc}"
        self._stats.failure("CILimitError")
        log.warning("%s", problem)
        raise CILimitError(problem, endpoint=endpoint)

    def _interpret(
        self,
        endpoint: str,
        response: _Answer,
        decode: Callable[[bytes], tuple[dict[str, Any] | None, bool]] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        status = response.status
        if status == 429 or status >= 500:
            retried = f" after {self.max_retries} retries" if status in RETRY_STATUSES else ""
            raise CITransportError(
                f"CI {endpoint}: HTTP {status}{retried}",
                endpoint=endpoint,
                status=status,
            )
        body, plain = (decode or _json_object)(response.content)
        if status in (401, 403):
            reason = _reason(body) if body is not None else f"HTTP {status}"
            raise CIAuthError(reason, endpoint=endpoint, status=status)
        if body is None:
            raise _ProtocolProblem(
                f"HTTP {status}, body is not a JSON object "
                f"({response.headers.get('Content-Type', 'no content type')}, "
                f"{len(response.content)} bytes: {_snippet(response.content)})"
            )
        success = body.get("success")
        if not isinstance(success, bool):
            raise _ProtocolProblem(
                f"HTTP {status}, JSON body has no boolean 'success' (keys: "
                f"{redact(', '.join(sorted(map(str, body))[:10]))})"
            )
        if not success:
            reason = _reason(body)
            error = CIAuthError if _AUTH_REASON.search(reason) else CIBusinessError
            raise error(reason, endpoint=endpoint, status=status)
        if status >= 400:
            raise _ProtocolProblem(f"HTTP {status} with success: true")
        return body, plain


# --- helpers ---------------------------------------------------------------------------------


def format_window(window: tuple[datetime, datetime]) -> tuple[str, str]:
    """Format a ``(start, end)`` window for CI: UTC, ``%m/%d/%Y %H:%M``.

    :raises ValueError: naive datetimes, end before start, or a window of 24 h or more
        (CI wants windows shorter than a day; ci-api.md §3).
    """
    start, end = window
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"window {name} must be a timezone-aware datetime, got {value!r}")
    if end < start:
        raise ValueError(f"window end {end.isoformat()} is before start {start.isoformat()}")
    if end - start >= timedelta(hours=24):
        raise ValueError(
            f"CI refuses windows of 24 h or more; got {end - start} "
            f"({start.isoformat()} .. {end.isoformat()}); split it into < 24 h slices"
        )
    return (
        start.astimezone(UTC).strftime(WINDOW_FORMAT),
        end.astimezone(UTC).strftime(WINDOW_FORMAT),
    )


def _check_orders_envelope(body: dict[str, Any]) -> None:
    meta = body.get("meta")
    if not isinstance(meta, dict):
        raise _ProtocolProblem("get_orders answer has no 'meta' object")
    for key in ("no_of_pages", "current_page", "max_items_per_page", "no_of_items"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _ProtocolProblem(
                f"get_orders meta.{key} is not a non-negative integer: {_short(repr(value))}"
            )
    if not isinstance(body.get("data"), list):
        raise _ProtocolProblem(
            f"get_orders 'data' is not a list: {type(body.get('data')).__name__}"
        )


_decode_json = msgspec.json.Decoder().decode


def _json_object(content: bytes) -> tuple[dict[str, Any] | None, bool]:
    """The body as a JSON object (``None`` when it is not one), and whether msgspec decoded
    it. msgspec reads a page ~3x faster than ``json`` (it holds the GIL against the thread
    staging the previous page); whatever it accepts, ``json.loads`` reads to an equal value.
    What it refuses (NaN, infinities, lone surrogates, a BOM, UTF-16, numbers beyond its
    range, malformed text) goes to ``json.loads``, so every body is answered as before."""
    try:
        parsed = _decode_json(content)
        plain = True
    except Exception:  # msgspec.DecodeError, RecursionError: the standard decoder decides
        try:
            parsed = json.loads(content)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError: ValueErrors
            return None, False
        plain = False
    return (parsed, plain) if isinstance(parsed, dict) else (None, False)


class _OrdersBody(msgspec.Struct):
    """A ``get_orders`` body in one scan: the members the page is made of (decoded as
    ``json`` would: ``Any``) and ``data``'s elements as ``msgspec.Raw``. Other members are
    skipped: only an answer that is not a plain success would name them (and such an answer
    is read again by ``_json_object``)."""

    success: Any = None
    reason: Any = None  # read for a 401/403 whatever the body says (_interpret)
    meta: Any = None
    data: list[msgspec.Raw] | None = None


_decode_orders_body = msgspec.json.Decoder(_OrdersBody).decode
# Python's int() refuses longer digit strings (sys.get_int_max_str_digits), so json.loads does.
_INT_DIGITS = 4300
_DIGIT_SPAN = _INT_DIGITS // 2
_DIGITS = frozenset(b"0123456789")


def _long_digit_run(content: bytes) -> bool:
    """Whether ``content`` may hold a run of more than 4300 digits (never a false "no"; a
    run of more than 2150 digits may say yes). A run longer than twice the sampling step
    covers two sample points and the whole span between them, so sampling is enough: ~200
    probes per page, not a scan."""
    step = _DIGIT_SPAN
    digits = _DIGITS
    for at in range(0, len(content) - step, step):
        if (
            content[at] in digits
            and content[at + step] in digits
            and content[at : at + step + 1].isdigit()
        ):
            return True
    return False


def _orders_object(content: bytes) -> tuple[dict[str, Any] | None, bool]:
    """A ``get_orders`` body as :func:`_json_object` reads it, except that each element of
    ``data`` stays ``msgspec.Raw`` (its exact bytes: the page is scanned, not built into
    dicts) and members other than ``success``, ``reason``, ``meta`` and ``data`` are left
    out (nothing reads them from a success). Only for
    a success whose answer is otherwise :func:`_json_object`'s: msgspec reads the body,
    ``success`` is true, ``data`` is an array, the body is valid UTF-8 and holds no integer
    longer than ``json`` reads (what msgspec's scan of a Raw does not check; both would
    refuse the body). Any other body: :func:`_json_object` itself. A number msgspec finds
    out of range but ``json`` reads (``1e400``) may still sit in a record: its decode falls
    back per record (:func:`connector.ci.fast.raw_value`)."""
    try:
        scanned = _decode_orders_body(content)
        content.decode("utf-8")
    except Exception:  # msgspec.DecodeError, UnicodeDecodeError, RecursionError
        return _json_object(content)
    if scanned.success is not True or scanned.data is None or _long_digit_run(content):
        return _json_object(content)
    body = {"success": True, "meta": scanned.meta, "data": scanned.data}
    if scanned.reason is not None:
        body["reason"] = scanned.reason
    return body, True


def _reason(body: Mapping[str, Any]) -> str:
    reason = body.get("reason")
    if isinstance(reason, str) and reason.strip():
        return redact(_short(reason.strip(), 300))
    return "no reason given"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _snippet(content: bytes) -> str:
    text = content[:200].decode("utf-8", "replace")
    return redact(_short(" ".join(text.split())) or "(empty)")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()
