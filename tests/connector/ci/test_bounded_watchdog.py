"""Issue 11: one watchdog thread for every call deadline (a ``threading.Timer`` per call
cost a thread start, ~1 ms, on every CI call)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from connector.ci.bounded import CallGuard


def test_calls_start_no_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    with CallGuard(30):  # the watchdog exists from here on
        pass
    starts: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        starts.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for _ in range(200):
        with CallGuard(30):
            pass
    assert starts == []


def test_the_earliest_deadline_fires_and_ended_guards_never_do() -> None:
    left, right = socket.socketpair()
    try:
        long_guard = CallGuard(60)
        with long_guard:
            ended = CallGuard(0.05)
            with ended:
                pass
            short = CallGuard(0.2)
            with short:
                short.attach(left)
                left.settimeout(10)
                started = time.monotonic()
                assert left.recv(1) == b""  # shut down by the watchdog, not the 10 s timeout
                waited = time.monotonic() - started
            assert short.fired
            assert waited < 5
            time.sleep(0.1)
            assert not ended.fired  # it ended before its deadline
            assert not long_guard.fired
    finally:
        left.close()
        right.close()
