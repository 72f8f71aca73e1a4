"""Live progress for long commands: pages read, lines, orders, rate and ETA, visible retries.

Listens to :mod:`connector.progress` page events, the plugin's per-batch log line and
urllib3's retry records, and draws a rich progress bar on stderr. Retries are printed as
their own lines ("us-main: 503 from CI, retry 2/5 in 1.0 s") so they stay in the scrollback.
Off a terminal (a pipe, CI) the bar is not animated; retry lines and the summary still print.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from connector.progress import PROGRESS_LOGGER
from connector.secrets import redact
from connector.textsafe import printable

__all__ = ["SyncProgress", "sync_progress"]

_BATCH = re.compile(r"^account (?P<account>\S+): (?P<orders>\d+) order\(s\)")
# urllib3's own records are read (status, remaining retries) and replaced by one clear line.
_LISTENED = (PROGRESS_LOGGER, "connector.plugin", "urllib3.util.retry", "urllib3.connectionpool")
_REPLACED = frozenset({"urllib3.connectionpool", "urllib3.util.retry"})


_STATUS = re.compile(r'HTTP/[\d.]+" (?P<status>\d{3}) ')
_REMAINING = re.compile(r"\(total=(?P<total>\d+)")
_BROKEN = re.compile(r"after connection broken by '(?P<error>\w+)")
_ERRORS = {
    "NewConnectionError": "connection refused by CI",
    "ConnectTimeoutError": "connect timeout",
    "ReadTimeoutError": "read timeout",
    "ProtocolError": "connection dropped",
}


class SyncProgress(logging.Handler):
    """A logging handler that moves one rich task per account."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(level=logging.DEBUG)
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.figures: dict[str, dict[str, int]] = {}
        self.current = ""
        self.retries: list[str] = []
        self.muted: set[str] = set()  # loggers whose propagation we turned off

    def start(self, account: str, max_retries: int = 5, backoff: float = 0.5) -> None:
        self.current = account
        self.max_retries = max_retries
        self.backoff = backoff
        self.last_status: int | None = None
        self.remaining: int | None = None
        self.figures[account] = {"pages": 0, "of": 0, "lines": 0, "orders": 0}
        self.started = time.monotonic()
        self.tasks[account] = self.progress.add_task(self._label(account), total=None)

    def _label(self, account: str) -> str:
        f = self.figures[account]
        pages = f"page {f['pages']}/{f['of']}" if f["of"] else "starting"
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (
            f"{printable(account)}: {pages} · {f['lines']:,} lines read "
            f"({f['lines'] / elapsed:,.0f}/s) · {f['orders']:,} orders handed to the host"
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._handle(record)
        except Exception:  # a progress glitch must never break the sync
            self.handleError(record)
        if (
            record.levelno >= logging.WARNING
            and record.name in self.muted
            and record.name not in _REPLACED
        ):
            logging.getLogger().handle(record)  # what the user would have seen without us

    def _handle(self, record: logging.LogRecord) -> None:
        account = self.current
        if account not in self.tasks:
            return
        figures = self.figures[account]
        task = self.tasks[account]
        data = getattr(record, "ci_progress", None)
        if isinstance(data, dict) and data.get("event") == "page":
            if data["page"] == 1:
                figures["of"] += int(data["pages"])  # a new listing (window) adds its pages
            figures["pages"] += 1
            figures["lines"] += int(data["records"])
            self.progress.update(
                task, total=max(figures["of"], 1), completed=figures["pages"],
                description=self._label(account),
            )  # fmt: skip
        elif record.name == "connector.plugin":
            match = _BATCH.match(record.getMessage())
            if match:
                figures["orders"] += int(match["orders"])
                self.progress.update(task, description=self._label(account))
        elif record.name.startswith("urllib3."):
            self._urllib3(account, record.getMessage())

    def _urllib3(self, account: str, message: str) -> None:
        """urllib3 logs a response's status, then "Incremented Retry (total=N)", then
        "Retry:" (status retries) or "Retrying ... after connection broken by 'X'"."""
        status = _STATUS.search(message)
        if status:
            self.last_status = int(status["status"])
            return
        remaining = _REMAINING.search(message)
        if message.startswith("Incremented Retry") and remaining:
            self.remaining = int(remaining["total"])
            return
        broken = _BROKEN.search(message)
        if message.startswith("Retry:") and self.last_status is not None:
            self._retry(account, f"HTTP {self.last_status} from CI")
        elif broken:
            if remaining:
                self.remaining = int(remaining["total"])
            self._retry(account, _ERRORS.get(broken["error"], broken["error"]))
        self.last_status = None

    def _retry(self, account: str, why: str) -> None:
        number = self.max_retries - (self.remaining or 0)
        wait = min(self.backoff * 2 ** max(number - 1, 0), 30.0)
        text = f"{account}: {why}, retry {number}/{self.max_retries} in ~{wait:.1f} s"
        self.retries.append(text)
        self.progress.console.print(printable(redact(text)), highlight=False)


@contextmanager
def sync_progress(enabled: bool = True) -> Iterator[SyncProgress | None]:
    """A live progress display on stderr while the block runs (``None`` when disabled)."""
    if not enabled:
        yield None
        return
    console = Console(file=sys.stderr, highlight=False)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        # Off a terminal the bar would only add noise to a log file: retry lines still print.
        disable=not console.is_terminal,
    )
    handler = SyncProgress(progress)
    saved: list[tuple[logging.Logger, int, bool]] = []
    for name in _LISTENED:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.DEBUG:
            # Listen at DEBUG without letting those records reach the user's log output.
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
            handler.muted.add(name)
    try:
        with progress:
            yield handler
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
