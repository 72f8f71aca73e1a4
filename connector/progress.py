"""Progress events of long operations, as log records a front end may show (or ignore).

The plugin runs behind the hooks, so a host cannot see its pages go by; it tells them here
instead, on the ``connector.progress`` logger at DEBUG level (silent unless someone listens).
Each record carries ``record.ci_progress``: a dict with ``event`` and its figures. The CLI
(:mod:`connector.cli.progress`) turns them into a rich progress bar with rate and ETA.

Events: ``page`` (``account``, ``page``, ``pages``, ``records``, ``window``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TypeVar

__all__ = ["PROGRESS_LOGGER", "announce_pages"]

PROGRESS_LOGGER = "connector.progress"
_log = logging.getLogger(PROGRESS_LOGGER)

P = TypeVar("P")


def announce_pages(
    pages: Iterable[P], account: str, window: tuple[datetime, datetime] | None
) -> Iterator[P]:
    """Yield ``pages`` unchanged, telling each one as it is read (page n of N, records)."""
    for number, page in enumerate(pages, start=1):
        if _log.isEnabledFor(logging.DEBUG):
            meta = getattr(page, "meta", None)
            records = getattr(page, "records", None)
            figures = {
                "event": "page",
                "account": account,
                "page": number,
                "pages": int(getattr(meta, "no_of_pages", 0) or 0),
                "records": len(records) if isinstance(records, list) else 0,
                "window": None if window is None else [w.isoformat() for w in window],
            }
            _log.debug(
                "account %s: page %d/%d read (%d records)",
                account,
                number,
                figures["pages"],
                figures["records"],
                extra={"ci_progress": figures},
            )
        yield page
