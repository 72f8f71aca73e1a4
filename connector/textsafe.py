"""Untrusted text made safe for files and terminals (customer names, addresses, CI reasons).

Two rules, one place:

* :func:`neutralise_cell` for every CSV/XLSX cell the connector writes: a cell a spreadsheet
  would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, tab or CR, the OWASP
  CSV-injection rule) gets a leading ``'`` so it stays text; a real number (``-5.00``) stays
  as it is; control characters a file should not hold (and openpyxl refuses) are escaped.
* :func:`printable` for every value shown on a terminal: control characters, ANSI escape
  sequences and bidi overrides are shown as visible escapes (``\\x1b``) instead of acting.

Both escape the same way (``\\xNN`` / ``\\uNNNN``), so a value reads the same in a file and on
screen. The simulator keeps its own copy (``mock_ci_server/textsafe.py``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

__all__ = ["FORMULA_LEADERS", "escape_control", "is_plain_number", "neutralise_cell", "printable"]

FORMULA_LEADERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet treat a cell as a formula (OWASP)."""

# A number a spreadsheet reads as that number and nothing else: "-5.00", "+1", "1e3".
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# In a file: C0 except tab/LF/CR (a gift message may hold line breaks), DEL, C1, and lone
# surrogates (they cannot be encoded: the writer would crash).
_FILE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# On a terminal: every C0 (a newline would forge a table row), DEL, C1, and the bidi
# controls that reorder what is shown (Trojan Source) and zero-width joiners/marks.
_TERMINAL_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """``text`` with the control characters a file must not hold shown as ``\\xNN``."""
    return _FILE_CONTROL.sub(_escape, text)


def is_plain_number(text: str) -> bool:
    """True when ``text`` is a plain decimal number (``-5.00``, ``+12``, ``1e3``)."""
    return _PLAIN_NUMBER.fullmatch(text) is not None


def neutralise_cell(value: Any) -> Any:
    """One cell for a CSV/XLSX file the connector writes.

    ``None`` stays ``None``; ``int``/``float``/``Decimal`` (not ``bool``) stay numbers; anything
    else becomes text with control characters escaped and, when it starts like a formula and
    is not a plain number, a leading ``'`` (Excel's own "this is text" mark; the connector's
    and the simulator's readers drop it again).
    """
    if value is None:
        return None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value
    text = str(value)
    if text.startswith(FORMULA_LEADERS) and not is_plain_number(text):
        text = "'" + text
    return escape_control(text)


def printable(value: Any) -> str:
    """``value`` as text safe to print on a terminal: control characters, escape sequences
    (ANSI ``ESC [ ...``), line breaks and bidi/zero-width marks become visible escapes."""
    text = "" if value is None else str(value)
    return _TERMINAL_CONTROL.sub(_escape, text)
