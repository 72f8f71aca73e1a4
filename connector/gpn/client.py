"""Client for the Groupon Partner Network (GPN) Transaction API, ``GET /v3/transactions``.

What is known (seed ``gpn-transaction-api.txt``): SEC1/SEC2 header auth, dates
``YYYY-MM-DDTHH:mm:SS``, a 30-day maximum time frame, selection by created/modified date, SALE
rows "rectified up to 48h later", and a 401 that is an HTML page. The success body is NOT
public: this client reads the ASSUMED shape described in :mod:`connector.gpn.schemas`.

The token goes on the wire in one place (:meth:`GPNClient._auth_headers`) and nowhere else:
no log line, exception or repr carries it. Like the CI client, redirects are never followed
(the auth headers would go along), answers are capped in bytes (wire and decompressed) and each
request has an overall deadline (:mod:`connector.ci.bounded`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from connector.ci.bounded import (
    ACCEPT_ENCODING,
    BodyBroken,
    BodyTooLarge,
    BoundedAdapter,
    BoundedRetry,
    CallGuard,
    DeadlineExceeded,
    UnsupportedEncoding,
    location_host,
    read_body,
)
from connector.errors import GPNAuthError, GPNError
from connector.gpn.schemas import Transaction, parse_transaction
from connector.secrets import Secret, redact

__all__ = [
    "MAX_WINDOW",
    "STATUSES",
    "TYPES",
    "GPNClient",
    "TransactionsResult",
    "split_windows",
]

log = logging.getLogger("connector.gpn")

MAX_WINDOW = timedelta(days=30)  # the seed: "Maximum Time Frame: 30 days"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
TYPES = ("SALE", "REFUND", "BONUS", "BOUNTY", "BOUNTY_REFUND", "PAYMENT", "CORRECTION")
STATUSES = ("NON-INVOICED", "PENDING", "COMMISSIONABLE", "NON-COMMISSIONABLE", "INVOICED")
_RETRY_STATUSES = (429, 500, 502, 503, 504)
_ONE_SECOND = timedelta(seconds=1)
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
CALL_DEADLINE = 120.0


@dataclass(frozen=True)
class TransactionsResult:
    """Transactions of every window, de-duplicated by id (newest lastModifiedDate wins),
    ordered by (lastModifiedDate, id)."""

    transactions: tuple[Transaction, ...]
    windows: tuple[tuple[datetime, datetime], ...]  # as requested, in the request's zone
    rows_read: int  # rows received before de-duplication
    problems: tuple[str, ...] = ()  # rows that could not be parsed (skipped), named by id
    summaries: tuple[Mapping[str, Any], ...] = ()  # the server's summary per window, as sent

    def totals(self) -> dict[str, dict[str, Any]]:
        """Count and payable total (major units) per ``TYPE/STATUS``, from the de-duplicated
        rows (the per-window server summaries double-count the overlap)."""
        out: dict[str, dict[str, Any]] = {}
        for t in self.transactions:
            key = f"{t.transaction_type}/{t.transaction_status}"
            entry = out.setdefault(key, {"count": 0, "payable": 0, "currency": t.currency})
            entry["count"] += 1
            entry["payable"] += t.payable_amount
            if entry["currency"] != t.currency:
                entry["currency"] = "MIXED"
        return dict(sorted(out.items()))


def _floor(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


def _ceil(dt: datetime) -> datetime:
    return dt if dt.microsecond == 0 else dt.replace(microsecond=0) + _ONE_SECOND


def split_windows(
    start: datetime, end: datetime, zone: tzinfo = UTC, max_span: timedelta = MAX_WINDOW
) -> list[tuple[datetime, datetime]]:
    """Split [start, end] into consecutive inclusive windows of at most ``max_span``, measured
    in wall-clock time of ``zone`` (the server compares the local dates it was sent, so a DST
    change inside a window must not push it over 30 days). Whole seconds; next window starts
    one second after the previous end. Returned datetimes are aware, in ``zone``."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be time-zone aware datetimes")
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    lo = _floor(start.astimezone(zone)).replace(tzinfo=None)
    hi = _ceil(end.astimezone(zone)).replace(tzinfo=None)
    windows: list[tuple[datetime, datetime]] = []
    while True:
        stop = min(lo + max_span, hi)
        windows.append((lo.replace(tzinfo=zone), stop.replace(tzinfo=zone)))
        if stop >= hi:
            return windows
        lo = stop + _ONE_SECOND


def _zone(name: str | None) -> tuple[tzinfo, str | None]:
    if name is None:
        return UTC, None
    try:
        return zoneinfo.ZoneInfo(name), name
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like Europe/Berlin"
        ) from None


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    upper = value.strip().upper()
    if upper == "ALL" and name == "transaction_type":
        return None
    if upper not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return upper


class GPNClient:
    """GPN Transaction API client.

    ``auth`` is ``"SEC2"`` (recommended: each request signs ``sha256_hex(token + timestamp)``
    with a fresh UTC timestamp) or ``"SEC1"`` (the token itself in ``x-auth-token``).
    ``clock`` returns the aware UTC "now" used for SEC2 timestamps (default: system time).
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        token: Secret,
        auth: str = "SEC2",
        timeout: float = 30.0,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] | None = None,
        *,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        call_deadline: float = CALL_DEADLINE,
    ) -> None:
        if not isinstance(token, Secret):
            raise TypeError("token must be a connector.secrets.Secret")
        mode = auth.strip().upper()
        if mode not in ("SEC1", "SEC2"):
            raise ValueError(f"auth={auth!r} must be SEC1 or SEC2")
        if not client_id:
            raise ValueError("client_id must not be empty")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.auth = mode
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.call_deadline = call_deadline
        self._token = token
        self._clock = clock or (lambda: datetime.now(UTC))
        self._owns_session = session is None
        self.session = session or requests.Session()
        retry = BoundedRetry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            backoff_factor=backoff,
            status_forcelist=_RETRY_STATUSES,
            redirect=0,
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            raise_on_status=False,  # the last 5xx/429 comes back as a response we can describe
        )
        adapter: HTTPAdapter = BoundedAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.requests_sent = 0

    def __repr__(self) -> str:
        return (
            f"GPNClient(base_url={self.base_url!r}, client_id={self.client_id!r}, "
            f"auth={self.auth!r})"
        )

    def __enter__(self) -> GPNClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self.session.close()

    # -- the one place the token is used -----------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        token = self._token.reveal()
        if self.auth == "SEC1":
            return {"x-auth-version": "SEC1", "x-auth-token": token}
        stamp = self._clock().astimezone(UTC).strftime(DATE_FORMAT)
        digest = hashlib.sha256((token + stamp).encode("utf-8")).hexdigest()
        return {"x-auth-version": "SEC2", "x-auth-timestamp": stamp, "x-auth-token": digest}

    # -- API -------------------------------------------------------------------------------
    def transactions(
        self,
        start: datetime,
        end: datetime,
        *,
        transaction_type: str | None = None,
        transaction_status: str | None = None,
        invoice_id: str | None = None,
        time_zone: str | None = None,
        summary: bool = False,
        overlap_hours: float = 48,
    ) -> TransactionsResult:
        """Every transaction created/modified in [start - overlap_hours, end].

        The overlap re-reads rows GPN rectified after a previous run (SALE rows move from
        PENDING up to 48 h later). Ranges over 30 days are split into windows. Raises
        :class:`GPNAuthError` on HTTP 401, :class:`GPNError` on any other failure, and
        ``ValueError`` for bad arguments (naive datetimes, unknown filter values).
        """
        if overlap_hours < 0:
            raise ValueError("overlap_hours must not be negative")
        kind = _choice("transaction_type", transaction_type, TYPES)
        status = _choice("transaction_status", transaction_status, STATUSES)
        zone, zone_name = _zone(time_zone)
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be time-zone aware datetimes")
        windows = split_windows(start - timedelta(hours=overlap_hours), end, zone)
        newest: dict[str, Transaction] = {}
        problems: list[str] = []
        summaries: list[Mapping[str, Any]] = []
        rows_read = 0
        for lo, hi in windows:
            params: dict[str, str] = {
                "clientId": self.client_id,
                "startDate": lo.strftime(DATE_FORMAT),
                "endDate": hi.strftime(DATE_FORMAT),
            }
            if zone_name is not None:
                params["timeZone"] = zone_name
            if kind is not None:
                params["transactionType"] = kind
            if status is not None:
                params["transactionStatus"] = status
            if invoice_id:
                params["invoiceId"] = invoice_id
            if summary:
                params["summary"] = "true"
            body = self._get(params)
            rows = body["transactions"]
            rows_read += len(rows)
            for raw in rows:
                parsed = parse_transaction(raw, zone)
                if isinstance(parsed, str):
                    problems.append(f"window {params['startDate']}..{params['endDate']}: {parsed}")
                    continue
                known = newest.get(parsed.transaction_id)
                if known is None or parsed.last_modified >= known.last_modified:
                    newest[parsed.transaction_id] = parsed
            if summary and isinstance(body.get("summary"), Mapping):
                summaries.append(body["summary"])
            log.debug(
                "GPN window %s..%s: %d rows", params["startDate"], params["endDate"], len(rows)
            )
        ordered = sorted(newest.values(), key=lambda t: (t.last_modified, t.transaction_id))
        for problem in problems:
            log.warning("GPN row skipped: %s", problem)
        return TransactionsResult(
            transactions=tuple(ordered),
            windows=tuple(windows),
            rows_read=rows_read,
            problems=tuple(problems),
            summaries=tuple(summaries),
        )

    def _get(self, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base_url}/v3/transactions"
        where = f"window {params['startDate']}..{params['endDate']}"
        self.requests_sent += 1
        failure = ""
        with CallGuard(self.call_deadline) as guard:
            try:
                status, ctype, content = self._fetch(url, params, guard)
            except DeadlineExceeded:
                failure = f"no complete answer within the {self.call_deadline:g} s deadline"
            except BodyTooLarge as exc:
                failure = f"{exc} (max_response_bytes={self.max_response_bytes}); not read further"
            except (UnsupportedEncoding, BodyBroken) as exc:
                failure = str(exc)
            except requests.RequestException as exc:
                # str(exc) names host and path, never headers; redact anyway, and drop the chain.
                failure = f"{type(exc).__name__}: {exc}"
        if failure:
            raise GPNError(redact(f"GPN request failed ({where}): {failure}"))
        if status == 401:
            raise GPNAuthError(
                f"GPN refused the credentials (HTTP 401) for clientId {self.client_id!r} "
                f"({self.auth}): check the client id and token in the configuration"
                + (
                    " and that this machine's clock is right (SEC2 timestamps must be close "
                    "to GPN's time)"
                    if self.auth == "SEC2"
                    else ""
                )
            )
        body = _json(content)
        if status >= 400:
            raise GPNError(
                redact(f"GPN refused the request (HTTP {status}, {where}): ")
                + redact(_error_message(body, content))
            )
        if not isinstance(body, dict) or not isinstance(body.get("transactions"), list):
            raise GPNError(
                redact(
                    f"GPN answered HTTP {status} ({where}) without the expected "
                    f"JSON object with a 'transactions' list (Content-Type {ctype}): "
                    f"{_text(content)!r}"
                )
            )
        return body

    def _fetch(self, url: str, params: dict[str, str], guard: CallGuard) -> tuple[int, str, bytes]:
        wait = max(0.001, min(self.timeout, guard.remaining()))
        headers = {**self._auth_headers(), "Accept-Encoding": ACCEPT_ENCODING}
        try:
            response = self.session.get(
                url,
                params=params,
                headers=headers,
                timeout=(wait, wait),
                allow_redirects=False,  # the auth headers must never go to another host
                stream=True,
            )
        except requests.RequestException:
            if guard.expired:
                raise DeadlineExceeded("deadline passed") from None
            raise
        if 300 <= response.status_code < 400:
            host = location_host(response)
            response.close()
            raise GPNError(
                f"GPN answered HTTP {response.status_code}, a redirect to host {host!r}: refused "
                f"(the client only talks to the configured base_url {self.base_url!r})"
            )
        content = read_body(response, self.max_response_bytes, guard)
        return response.status_code, response.headers.get("Content-Type", "?"), content


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


def _text(content: bytes) -> str:
    return content[:200].decode("utf-8", "replace")


def _error_message(body: Any, content: bytes) -> str:
    """The seed's error envelope ``{"error": {"httpCode", "message"}}``, or the raw text."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if message:
            return str(message)
    return f"{_text(content)!r}"
