"""Keeping access tokens out of logs, exceptions, reprs and CLI output.

CI authenticates with a ``token`` query parameter, so a token rides in every URL the client
builds. Two layers keep it private: :class:`Secret` never renders its value, and
:func:`redact` / :class:`RedactingFilter` scrub every registered token (and any
``token=...`` query parameter) from text before it is logged or shown.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

__all__ = ["RedactingFilter", "Secret", "install_log_redaction", "redact", "register_secret"]

MASK = "***"

_TOKEN_PARAM = re.compile(r"(?i)(\btoken=|x-auth-token['\"]?\s*[:=]\s*['\"]?)[^&\s'\"]+")
_known: set[str] = set()
_known_lock = threading.Lock()


class Secret:
    """A string that refuses to show itself: ``str``, ``repr`` and f-strings print ``***``.

    Call :meth:`reveal` at the single place the value goes on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret value must be a str")
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        # Pickling would carry the value into places we do not control.
        raise TypeError("Secret values cannot be pickled")


def register_secret(value: str) -> None:
    """Remember ``value`` so :func:`redact` masks it wherever it appears."""
    if len(value) >= 4:
        with _known_lock:
            _known.add(value)


def redact(text: str) -> str:
    """Mask every registered secret and every ``token=`` parameter in ``text``."""
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    return _TOKEN_PARAM.sub(lambda m: m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later from exc_info; pre-render and redact them now.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


_factory_lock = threading.Lock()
_factory_installed = False


def _install_record_factory() -> None:
    """Redact every log record at creation, whichever logger or handler sees it later.

    Filters on named loggers do not apply to their children (``urllib3.util.retry`` logs full
    URLs) nor to handlers added afterwards; a record factory covers both.
    """
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a broken format string must not kill logging
                return record
            cleaned = redact(message)
            if cleaned != message or record.args:
                record.msg = cleaned
                record.args = None
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def install_log_redaction() -> None:
    """Make every log record pass through :func:`redact`. Idempotent.

    A record factory redacts each record as it is created (all loggers, including urllib3's
    ``GET /path?token=...`` debug lines); the filters on the root handlers also pre-render and
    redact tracebacks.
    """
    _install_record_factory()
    flt = RedactingFilter()
    for name in ("", "urllib3", "urllib3.connectionpool", "requests", "connector", "waitress"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(flt)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(flt)
