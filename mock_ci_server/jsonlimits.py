"""JSON nesting limit for everything the simulator parses (request bodies, JSON form fields).

``json.loads`` recurses once per level: a body nested 1,000 deep raised ``RecursionError``
and the simulator answered 500. Here a body nested deeper than :data:`MAX_JSON_DEPTH` is a
:class:`~mock_ci_server.errors.JSONTooDeep` (rendered as 400 in the route's envelope). Plain
Python, no Flask.
"""

from __future__ import annotations

import json
from typing import Any

from mock_ci_server.errors import JSONTooDeep

__all__ = ["MAX_JSON_DEPTH", "check_depth", "loads"]

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted; CI's own payloads are 4 levels deep, control bodies 5."""


def _too_deep(limit: int) -> JSONTooDeep:
    return JSONTooDeep(f"JSON nested deeper than {limit} levels; refused")


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JSONTooDeep` when parsed ``value`` nests deeper than ``limit`` (iterative:
    no recursion of its own)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise _too_deep(limit)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def loads(text: str | bytes, limit: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """``json.loads`` that refuses deep nesting with :class:`JSONTooDeep`, never
    ``RecursionError``; other errors are ``json.loads``' own (``ValueError``)."""
    sample = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    shallow = sample.count(b"[") + sample.count(b"{") <= limit  # cannot be deeper: skip the walk
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise _too_deep(limit) from None
    if not shallow:
        check_depth(value, limit)
    return value
