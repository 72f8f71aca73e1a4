"""Fewer cyclic garbage collections while a hook churns through a page of lines.

An import allocates and frees a few hundred thousand small containers per 10k lines (ledger
rows, parsed fields, order objects); almost all are freed by reference counting, yet
CPython's default generation-0 threshold (700 allocations) runs ~30 collections per 1,000
lines, and the older generations with them: 8-13% of the connector's CPU in ``make bench``
(issue 11); a wave of ``oms_dispatch_many`` churns alike (~16 collections a wave of 500
shipments, and through their survivors a full collection of the host's whole heap every few
waves). While :func:`fewer_collections` is active the generation-0 threshold is
:data:`GEN0_THRESHOLD`; the old thresholds come back when the outermost use ends. Nothing is
frozen or disabled: cycles are still collected, only less often (bounded memory).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["GEN0_THRESHOLD", "fewer_collections"]

GEN0_THRESHOLD = 10_000
"""Allocations between generation-0 collections inside a hook (CPython's default: 700)."""

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, ...] | None = None  # the thresholds to put back (None: left alone)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the generation-0 threshold for the duration (nestable, thread-safe). A threshold
    of 0 (collection disabled) or above ours is left as it is; the thresholds are restored
    only if nobody changed them meanwhile."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            current = gc.get_threshold()
            if 0 < current[0] < GEN0_THRESHOLD:
                gc.set_threshold(GEN0_THRESHOLD, *current[1:])
                _saved = current
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                if gc.get_threshold() == (GEN0_THRESHOLD, *_saved[1:]):
                    gc.set_threshold(*_saved)
                _saved = None
