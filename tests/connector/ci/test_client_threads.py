"""CIClient from several threads (issue 11 point 3): a session per thread with the same
retrying, bounded adapter; one shared throttle; a Retry-After holds the other threads; the sync
budget follows work handed to a worker; a cancelled scope cuts a hung call short."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
import requests
import responses

from connector.ci.bounded import BoundedAdapter
from connector.ci.client import CIClient
from connector.ci.throttle import Throttle
from connector.errors import CILimitError, CITransportError
from connector.overlap import CallPool, prefetch
from tests.connector.ci._support import BASE, ORDERS_URL
from tests.connector.ci._support import make_client as _client

MARK_URL = f"{BASE}/api/v4/mark_exported"


def _on_threads(client: CIClient, n: int) -> list[requests.Session]:
    """The session each of ``n`` worker threads uses inside ``worker_session``."""
    sessions: list[requests.Session] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def work() -> None:
        with client.worker_session():
            barrier.wait()  # all alive at once: no thread id is reused
            client.mark_exported([1])
            with lock:
                sessions.append(client._session_here())

    threads = [threading.Thread(target=work) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sessions


@responses.activate
def test_each_worker_thread_gets_its_own_session_with_the_same_machinery() -> None:
    responses.add(responses.POST, MARK_URL, json={"success": True})
    client = _client()
    sessions = _on_threads(client, 3)
    assert len({id(s) for s in sessions}) == 3
    assert client._session not in sessions
    for session in sessions:
        adapter = session.get_adapter(BASE)
        assert isinstance(adapter, BoundedAdapter)
        assert adapter.max_retries.total == 2
        assert adapter.max_retries.redirect == 0
    assert client._session_here() is client._session  # the building thread keeps its own
    assert client.stats.calls == {"mark_exported": 3}
    assert len(responses.calls) == 3


@responses.activate
def test_a_given_session_lends_its_adapters_to_the_worker_sessions() -> None:
    responses.add(responses.POST, MARK_URL, json={"success": True})
    given = requests.Session()
    given.headers["X-Host"] = "ref"
    client = _client(session=given)
    [worker] = _on_threads(client, 1)
    assert worker is not given
    assert worker.get_adapter(BASE) is given.get_adapter(BASE)
    assert worker.headers["X-Host"] == "ref"
    client.close()  # the given session is the caller's: not closed


@responses.activate
def test_a_thread_outside_worker_session_gets_one_closed_with_the_client() -> None:
    responses.add(responses.POST, MARK_URL, json={"success": True})
    client = _client()
    seen: list[requests.Session] = []

    def work() -> None:
        client.mark_exported([1])
        seen.append(client._session_here())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen[0] is not client._session
    assert client._thread_sessions == seen
    client.close()
    assert client._thread_sessions == []


def _pool_sessions(client: CIClient, workers: int) -> set[int]:
    """The sessions (by id) the threads of one CallPool of ``workers`` used."""
    seen: set[int] = set()
    barrier = threading.Barrier(workers)

    def call(lid: int) -> None:
        barrier.wait()  # every thread busy at once: one call per thread
        client.mark_exported([lid])
        seen.add(id(client._session_here()))

    with CallPool(workers, client.worker_session) as pool:
        for call_ in [pool.submit(call, lid) for lid in range(1, workers + 1)]:
            call_.result()
    return seen


@responses.activate
def test_worker_sessions_are_kept_for_the_next_pool_and_closed_with_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pool per hook call: the next pool's threads take the sessions the last one left
    # (no new session, environment lookup or connection per call), at most _SPARE_SESSIONS.
    responses.add(responses.POST, MARK_URL, json={"success": True})
    client = _client()
    first = _pool_sessions(client, 3)
    assert len(first) == 3
    assert {id(s) for s in client._spare_sessions} == first
    assert _pool_sessions(client, 3) == first
    assert _pool_sessions(client, 4) > first  # one more made, then kept too
    assert len(client._spare_sessions) == 4
    kept = {id(s) for s in client._spare_sessions}
    closed: set[int] = set()
    close = requests.Session.close

    def spy(self: requests.Session) -> None:
        closed.add(id(self))
        close(self)

    monkeypatch.setattr(requests.Session, "close", spy)
    client.close()
    assert kept <= closed
    assert client._spare_sessions == []
    with client.worker_session():  # a block after close: its session is not kept
        pass
    assert client._spare_sessions == []


@responses.activate
def test_a_given_sessions_workers_copy_it_afresh_for_each_pool() -> None:
    responses.add(responses.POST, MARK_URL, json={"success": True})
    given = requests.Session()
    client = _client(session=given)
    _pool_sessions(client, 2)
    assert client._spare_sessions == []
    given.headers["X-Host"] = "changed"
    with client.worker_session():
        assert client._session_here().headers["X-Host"] == "changed"
    client.close()


@responses.activate
def test_threads_share_one_throttle() -> None:
    responses.add(responses.POST, MARK_URL, json={"success": True})
    client = _client(throttle=Throttle(40))
    started = time.monotonic()
    with CallPool(4, client.worker_session) as pool:
        calls = [pool.submit(client.mark_exported, [i]) for i in range(1, 13)]
        for call in calls:
            call.result()
    # 12 calls at 40/s with a burst of 1: at least 11 intervals of 25 ms across all threads.
    assert time.monotonic() - started >= 11 / 40 - 0.01
    assert len(responses.calls) == 12


def test_a_retry_after_holds_the_other_threads() -> None:
    now = [100.0]
    slept: list[tuple[str, float]] = []

    def sleep(seconds: float) -> None:
        slept.append((threading.current_thread().name, round(seconds, 3)))

    throttle = Throttle(0, clock=lambda: now[0], sleep=sleep)
    throttle.hold(2.0)  # this thread was told Retry-After: 2 (it waits in its own retry)
    assert throttle.acquire() == 0.0
    other = threading.Thread(target=throttle.acquire, name="other")
    other.start()
    other.join()
    assert slept == [("other", 2.0)]
    now[0] += 5  # past it: nobody waits
    other = threading.Thread(target=throttle.acquire, name="late")
    other.start()
    other.join()
    assert slept == [("other", 2.0)]


def test_the_client_passes_a_retry_after_to_its_throttle(server: Any) -> None:
    server.add(429, '{"success": false, "reason": "slow down"}', {"Retry-After": "3"})
    server.add(200, '{"success": true}')
    held: list[float] = []
    throttle = Throttle(0)
    throttle.hold = held.append  # type: ignore[method-assign]
    client = _client(base_url=server.url, throttle=throttle)
    client.mark_exported([1])
    assert held == [3.0]


@responses.activate
def test_the_sync_budget_follows_the_prefetch_thread() -> None:
    client = _client()
    with client.budget(0.0, "sync read"), pytest.raises(CILimitError, match="sync read deadline"):
        list(prefetch(client.iter_pages(), client.worker_session))
    assert len(responses.calls) == 0
    responses.add(
        responses.GET,
        ORDERS_URL,
        json={
            "success": True,
            "meta": {
                "no_of_pages": 0,
                "current_page": 0,
                "max_items_per_page": 250,
                "no_of_items": 0,
            },
            "data": [],
        },
    )
    with client.budget(60.0, "sync read"):
        pages = list(prefetch(client.iter_pages(), client.worker_session))
    assert [p.meta.no_of_pages for p in pages] == [0]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_leaving_a_pool_on_an_error_cuts_a_hung_call_short(silent_server: str) -> None:
    client = _client(base_url=silent_server, timeout=30, call_deadline=60, max_retries=0)
    started = time.monotonic()
    calls: list[Future[None]] = []

    def stop_while_in_flight() -> None:
        with CallPool(2, client.worker_session) as pool:
            calls.append(pool.submit(client.mark_exported, [1]))
            time.sleep(0.3)  # the call is waiting for an answer that never comes
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        stop_while_in_flight()
    [hung] = calls
    assert time.monotonic() - started < 10  # not the 30 s read timeout
    with pytest.raises(CITransportError):
        hung.result()
    assert not [t for t in threading.enumerate() if t.name.startswith("ci-call")]


def test_a_cancelled_scope_ends_a_backoff_wait_early(server: Any) -> None:
    server.add(503, "down", {"Retry-After": "20"})
    client = _client(base_url=server.url, sleep=time.sleep, max_retries=2, call_deadline=60)
    started = time.monotonic()

    def interrupt_while_waiting() -> None:
        with CallPool(1, client.worker_session) as pool:
            pool.submit(client.mark_exported, [1])
            time.sleep(0.3)  # the call waits out Retry-After: 20
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupt_while_waiting()
    assert time.monotonic() - started < 10  # not the 20 s Retry-After
    assert client.stats.calls == {"mark_exported": 1}


def test_a_worker_whose_setup_fails_hands_the_error_to_every_call() -> None:
    @contextlib.contextmanager
    def broken() -> Iterator[None]:
        raise OSError("no session")
        yield  # pragma: no cover

    with CallPool(2, broken) as pool:
        calls = [pool.submit(lambda: 1) for _ in range(4)]
        for call in calls:
            with pytest.raises(OSError, match="no session"):
                call.result(timeout=5)
