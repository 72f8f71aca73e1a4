"""connector.overlap.prefetch: the caller takes item N only once the worker's request for item
N+1 is out (the server works on it while the caller works on N), waiting no longer than
``HEAD_START_SECONDS``, and never for an item whose request never went out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from connector import overlap
from connector.ci.bounded import notify_request_written
from connector.overlap import prefetch


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.at: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, event: str) -> None:
        with self._lock:
            self.events.append(event)
            self.at[event] = time.monotonic()


def _pages(log: _Log, count: int, *, prepare: float, answer: float) -> Iterator[int]:
    """Items as a paging client makes them: the request of each item after the first takes
    ``prepare`` seconds to go out, its answer ``answer`` seconds more."""
    for item in range(1, count + 1):
        if item > 1:
            time.sleep(prepare)
            log.add(f"sent {item}")
            notify_request_written()
            time.sleep(answer)
        log.add(f"made {item}")
        yield item


def test_the_caller_takes_an_item_once_the_next_request_is_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(overlap, "HEAD_START_SECONDS", 5.0)  # the wait is not cut short here
    log = _Log()
    for item in prefetch(_pages(log, 3, prepare=0.02, answer=0.2)):
        log.add(f"got {item}")
    assert log.events == [
        *("made 1", "sent 2", "got 1"),
        *("made 2", "sent 3", "got 2"),
        *("made 3", "got 3"),
    ]
    # The caller did not wait for item 2 itself, only for its request.
    assert log.at["got 1"] < log.at["made 2"] - 0.1


def test_the_wait_for_the_next_request_is_bounded() -> None:
    log = _Log()
    for item in prefetch(_pages(log, 2, prepare=0.5, answer=0.0)):
        log.add(f"got {item}")
    # The request of item 2 took 0.5 s to go out; item 1 was handed over long before.
    assert log.at["got 1"] - log.at["made 1"] < 0.3
    assert log.events.index("got 1") < log.events.index("sent 2")


def test_an_item_that_fails_before_its_request_does_not_hold_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(overlap, "HEAD_START_SECONDS", 5.0)
    got: list[tuple[int, float]] = []
    made: list[float] = []

    def failing() -> Iterator[int]:
        made.append(time.monotonic())
        yield 1
        raise RuntimeError("no request: the listing broke")

    def take_all() -> None:
        for item in prefetch(failing()):
            got.append((item, time.monotonic()))

    with pytest.raises(RuntimeError, match="listing broke"):
        take_all()
    assert [g[0] for g in got] == [1]
    assert got[0][1] - made[0] < 1.0  # not the 5 s head start: the failure ended the wait
