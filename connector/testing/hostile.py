"""A hostile CI server on 127.0.0.1 port 0, written on raw sockets so it can misbehave in ways
a framework would not let it: endless bodies, gzip bombs, one byte every few seconds (in the
headers or the body), redirects to another host, page counters that lie.

Used by the client's real-socket tests and by ``benchmarks/hostile.py`` (``make hostile``).
Every request is recorded (method, path with query, body) so tests can prove where the token
went and how many requests a call made.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["MODES", "HostileServer", "Seen", "gzip_bomb", "orders_page"]

MODES = (
    "ok",
    "huge",
    "huge_declared",
    "gzip_bomb",
    "drip_body",
    "drip_headers",
    "redirect",
    "lying_counters",
    "status_503_endless",
    "retry_after_day",
    "html",
)

_T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Seen:
    method: str
    target: str
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)


def gzip_bomb(decompressed_bytes: int) -> bytes:
    """A gzip body that inflates to a JSON-looking answer of ``decompressed_bytes`` bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(b'{"success": true, "meta": {}, "data": [], "pad": "')]
    block = b"0" * (1024 * 1024)
    left = decompressed_bytes
    while left > 0:
        parts.append(compressor.compress(block[: min(left, len(block))]))
        left -= len(block)
    parts.append(compressor.compress(b'"}'))
    parts.append(compressor.flush())
    return b"".join(parts)


def _record(lid: int, when: datetime) -> dict[str, Any]:
    stamp = when.strftime("%m/%d/%Y %I:%M%p UTC")
    return {
        "orderid": f"HX{lid}",
        "parent_orderid": None,
        "amount": {"total": 10.0, "shipping": 0},
        "date": stamp,
        "fulfillment_method": "Drop Ship (Marketplace)",
        "supplier": "HOSTILE",
        "line_items": [
            {
                "ci_lineitemid": lid,
                "sku": "SKU-1",
                "bom_sku": None,
                "unit_price": 10.0,
                "ship_by_date": "",
                "status": "open",
                "groupon_cost": 5.0,
                "discount": 0,
                "voucher_code": "",
                "name": "Item",
                "fulfillment_lineitem_id": str(1300000000 + lid),
                "gift_message": "",
                "order_line_item_uuid": f"uuid-{lid}",
                "quantity": 1,
            }
        ],
        "customer": {
            "name": "Jane Example",
            "address1": "1 Main St",
            "address2": "",
            "city": "Chicago",
            "state": "IL",
            "zip": "60601",
            "country": "US",
            "phone": "",
        },
        "shipping": {"carrier": "", "method": "standard"},
    }


def orders_page(page: int, pages: int, per_page: int = 250) -> bytes:
    """Page ``page`` of a listing that claims ``pages`` full pages (distinct line ids)."""
    first = 10_000_000 + (page - 1) * per_page
    records = [_record(first + i, _T0 + timedelta(minutes=i)) for i in range(per_page)]
    meta = {
        "no_of_pages": pages,
        "current_page": page,
        "max_items_per_page": per_page,
        "no_of_items": pages * per_page,
    }
    return json.dumps({"success": True, "meta": meta, "data": records}).encode()


@dataclass
class HostileServer:
    """``with HostileServer("drip_body") as server: ... server.url ...``.

    :ivar mode: one of :data:`MODES` (may be changed between requests).
    :ivar interval: seconds between two dripped bytes.
    :ivar bomb_bytes: decompressed size of the gzip bomb.
    :ivar redirect_to: the ``Location`` of ``redirect``.
    :ivar pages: what ``lying_counters`` claims.
    """

    mode: str = "ok"
    interval: float = 0.5
    bomb_bytes: int = 1024 * 1024 * 1024
    redirect_to: str = "http://collector.invalid/steal"
    redirect_status: int = 307
    pages: int = 1118
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Built up front: compressing a 1 GB bomb takes seconds that are not the client's.
        self._bomb: bytes | None = gzip_bomb(self.bomb_bytes) if self.mode == "gzip_bomb" else None
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    # -- serving

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(30)
            reader = conn.makefile("rb")
            while not self._stop.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                with self._lock:
                    self.seen.append(request)
                if not self._answer(conn, request):
                    return

    def _answer(self, conn: socket.socket, request: Seen) -> bool:
        """Answer one request; ``False`` closes the connection."""
        mode = self.mode
        if mode == "ok":
            _send(conn, 200, b'{"success": true}')
            return True
        if mode == "html":
            _send(conn, 200, b"<html>maintenance</html>", ctype="text/html")
            return True
        if mode == "retry_after_day":
            _send(conn, 503, b"busy", ctype="text/plain", extra={"Retry-After": "86400"})
            return True
        if mode == "redirect":
            _send(conn, self.redirect_status, b"", extra={"Location": self.redirect_to})
            return True
        if mode == "lying_counters":
            page = int(request.query.get("page", ["1"])[0])
            _send(conn, 200, orders_page(page, self.pages))
            return True
        if mode == "gzip_bomb":
            if self._bomb is None:
                self._bomb = gzip_bomb(self.bomb_bytes)
            _send(conn, 200, self._bomb, extra={"Content-Encoding": "gzip"})
            return True
        if mode in ("huge", "huge_declared", "status_503_endless"):
            status = 503 if mode == "status_503_endless" else 200
            head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            if mode == "huge_declared":
                head += f"Content-Length: {1024**3}\r\n"
            else:
                head += "Transfer-Encoding: chunked\r\n"
            conn.sendall((head + "\r\n").encode())
            block = b" " * 65536
            chunk = block if mode == "huge_declared" else b"10000\r\n" + block + b"\r\n"
            while not self._stop.is_set():
                conn.sendall(chunk)  # until the client hangs up (OSError ends the handler)
            return False
        if mode == "drip_headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: ")
            while not self._stop.is_set():
                conn.sendall(b"a")
                time.sleep(self.interval)
            return False
        # drip_body
        body = b'{"success": true, "pad": "' + b"0" * 100_000 + b'"}'
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for byte in body:
            if self._stop.is_set():
                break
            conn.sendall(bytes([byte]))
            time.sleep(self.interval)
        return False


def _read_request(reader: Any) -> Seen | None:
    line = reader.readline(65536)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) < 2:
        return None
    length = 0
    while True:
        header = reader.readline(65536)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip() or 0)
    body = reader.read(length) if length else b""
    return Seen(parts[0], parts[1], body)


def _send(
    conn: socket.socket,
    status: int,
    body: bytes,
    *,
    ctype: str = "application/json",
    extra: dict[str, str] | None = None,
) -> None:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    for key, value in (extra or {}).items():
        head += f"{key}: {value}\r\n"
    conn.sendall(head.encode() + b"\r\n" + body)


@contextlib.contextmanager
def hostile(mode: str, **kwargs: Any) -> Iterator[HostileServer]:
    """Context manager shorthand."""
    server = HostileServer(mode, **kwargs)
    try:
        yield server
    finally:
        server.stop()
