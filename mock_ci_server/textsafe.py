"""Cells the simulator writes into its order export, made safe (its own copy of the rule in
``connector/textsafe.py``; the two packages never import each other).

A cell a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, tab or
CR: the OWASP CSV-injection rule) gets a leading ``'``; a plain number stays as it is; control
characters a file should not hold (openpyxl refuses them) and lone surrogates (they cannot be
encoded) are shown as ``\\xNN`` / ``\\uNNNN``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

__all__ = ["FORMULA_LEADERS", "neutralise_cell"]

FORMULA_LEADERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_FILE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def neutralise_cell(value: Any) -> Any:
    """``None`` and real numbers unchanged; anything else as safe text (see the module doc)."""
    if value is None:
        return None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value
    text = str(value)
    if text.startswith(FORMULA_LEADERS) and _PLAIN_NUMBER.fullmatch(text) is None:
        text = "'" + text
    return _FILE_CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
