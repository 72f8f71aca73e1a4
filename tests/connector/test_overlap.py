"""connector.overlap: a pool's calls belong to the caller's scope too (a worker's stop cuts
them short), and the pool leaves that scope when it closes."""

from __future__ import annotations

import threading
import time

import pytest

from connector.ci.bounded import CallGuard, CallScope, DeadlineExceeded
from connector.overlap import CallPool


def test_cancelling_the_callers_scope_cuts_the_pools_calls_short() -> None:
    in_call = threading.Event()

    def hung_call() -> None:
        with CallGuard(3600) as guard:  # a server that never answers
            in_call.set()
            guard.pause(3600)

    outer = CallScope()
    with outer.active():
        pool = CallPool(1)
        try:
            call = pool.submit(hung_call)
            assert in_call.wait(5)
            started = time.monotonic()
            outer.cancel()
            with pytest.raises(DeadlineExceeded):
                call.result(timeout=5)
            assert time.monotonic() - started < 2
        finally:
            pool.close()
    assert outer._guards == set()  # the closed pool no longer stands in the caller's scope


def test_a_pool_outside_any_scope_is_left_alone() -> None:
    with CallPool(1) as pool:
        assert pool.submit(lambda: 41 + 1).result(timeout=5) == 42
