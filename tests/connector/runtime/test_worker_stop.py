""":class:`connector.runtime.worker.StopControl`: the worker's stop is bounded whatever the
jobs in progress and the database do (no PostgreSQL here: the watchdog alone)."""

from __future__ import annotations

import threading
import time

import pytest

from connector.ci.bounded import CallGuard, DeadlineExceeded
from connector.runtime.worker import StopControl


class _Exit(Exception):
    pass


def _control(
    stop_seconds: float = 0.3, settle_seconds: float = 0.3
) -> tuple[StopControl, list[str], list[int]]:
    said: list[str] = []
    codes: list[int] = []
    return (
        StopControl("w", stop_seconds, settle_seconds, say=said.append, exit=codes.append),
        said,
        codes,
    )


def test_a_job_past_stop_seconds_has_its_ci_call_cut_short() -> None:
    stop, said, codes = _control()
    ended: list[str] = []
    in_call = threading.Event()

    def job() -> None:
        # A CI call on a server that never answers (its own deadline: an hour).
        with stop.job(), CallGuard(3600) as guard:
            in_call.set()
            try:
                guard.pause(3600)
            except DeadlineExceeded:
                ended.append("cut")

    thread = threading.Thread(target=job)
    thread.start()
    assert in_call.wait(5)
    started = time.monotonic()
    assert stop.request("SIGTERM")
    thread.join(10)
    stop.finished()  # the worker handed its jobs back
    assert stop.watchdog is not None
    stop.watchdog.join(10)
    assert ended == ["cut"]
    assert 0.25 < time.monotonic() - started < 5
    assert codes == []  # a clean stop: the watchdog did not end the process
    assert said[0] == (
        "worker w: SIGTERM: stopping (no new jobs; 1 job(s) in progress get up to 0.3 s to finish)"
    )
    assert "still running after 0.3 s: cutting their CI calls short" in said[1]


def test_a_job_started_after_the_cut_fails_its_calls_at_once() -> None:
    stop, _said, _codes = _control(stop_seconds=0.0)
    stop.request("SIGTERM")
    assert stop.watchdog is not None
    time.sleep(0.1)
    stop.cut()
    with stop.job(), CallGuard(3600) as guard, pytest.raises(DeadlineExceeded):
        guard.pause(3600)
    stop.finished()


def test_a_hand_back_that_does_not_come_ends_the_process_with_a_reason() -> None:
    stop, said, codes = _control()
    stop.request("SIGTERM")  # idle worker; the database does not answer: never finished()
    assert stop.watchdog is not None
    stop.watchdog.join(5)
    assert codes == [1]
    assert "could not hand its jobs back to the queue within 0.3 s" in said[-1]
    assert "another worker retries them" in said[-1]


def test_a_job_that_ends_in_time_is_not_cut_and_a_clean_stop_exits_normally() -> None:
    stop, said, codes = _control(stop_seconds=5)
    release = threading.Event()

    def job() -> None:
        with stop.job():
            release.wait(5)

    thread = threading.Thread(target=job)
    thread.start()
    time.sleep(0.05)
    stop.request("SIGINT")
    release.set()
    thread.join(5)
    stop.finished()
    assert stop.watchdog is not None
    stop.watchdog.join(5)
    assert codes == []
    assert len(said) == 1


def test_a_second_signal_exits_at_once() -> None:
    stop, said, codes = _control(stop_seconds=60, settle_seconds=60)
    calls: list[str] = []
    stop.on_request(lambda: calls.append("cancel"))
    assert stop.request("SIGTERM")
    assert calls == ["cancel"]
    assert not stop.request("SIGTERM")
    assert codes == [1]
    assert "worker w: SIGTERM again: exiting now without waiting" in said
    stop.finished()


def test_a_job_that_starts_just_after_the_request_gets_the_grace_too() -> None:
    """procrastinate may have fetched a job just before the signal: it starts after it and
    still gets stop_seconds, not only the hand-back's settle_seconds."""
    stop, said, codes = _control(stop_seconds=5, settle_seconds=0.3)
    stop.request("SIGTERM")  # nothing running yet
    ran: list[str] = []

    def job() -> None:
        time.sleep(0.1)
        with stop.job():
            time.sleep(0.8)  # longer than settle_seconds, shorter than stop_seconds
            ran.append("done")

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(5)
    stop.finished()
    assert stop.watchdog is not None
    stop.watchdog.join(5)
    assert ran == ["done"]
    assert codes == []
    assert len(said) == 1
