"""serve_in_thread / run_forever: real loopback sockets on port 0, clean shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from flask import Flask

from mock_ci_server.serve import RunningServer, serve_in_thread


def tiny_app() -> Flask:
    app = Flask("tiny")

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    @app.get("/slow")
    def slow() -> str:
        time.sleep(0.3)
        return "done"

    return app


def _port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_serves_on_a_free_loopback_port_and_stops() -> None:
    server = serve_in_thread(tiny_app())
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.running
        assert requests.get(f"{server.url}/ping", timeout=5).text == "pong"
    finally:
        server.stop()
    assert not server.running
    assert _port_is_closed(server.port)
    server.stop()  # idempotent


def test_context_manager_stops_even_with_an_open_keepalive_connection() -> None:
    session = requests.Session()
    with serve_in_thread(tiny_app()) as server:
        assert isinstance(server, RunningServer)
        assert session.get(f"{server.url}/ping", timeout=5).status_code == 200
    assert not server.running
    assert _port_is_closed(server.port)
    with pytest.raises(requests.ConnectionError):
        session.get(f"{server.url}/ping", timeout=2)
    session.close()


def test_threads_serve_concurrently() -> None:
    results: list[str] = []

    with serve_in_thread(tiny_app(), threads=4) as server:

        def fetch() -> None:
            results.append(requests.get(f"{server.url}/slow", timeout=5).text)

        started = time.monotonic()
        workers = [threading.Thread(target=fetch) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - started
    assert results == ["done"] * 4
    assert elapsed < 1.0  # 4 x 0.3 s in sequence would take 1.2 s


def test_two_servers_get_different_ports() -> None:
    with serve_in_thread(tiny_app()) as one, serve_in_thread(tiny_app()) as two:
        assert one.port != two.port


RUN_FOREVER_SCRIPT = """
from flask import Flask
from mock_ci_server.serve import run_forever
app = Flask("tiny")
app.add_url_rule("/ping", "ping", lambda: "pong")
run_forever(app, "127.0.0.1", 0, 2, on_ready=lambda url: print("URL", url, flush=True))
"""


def test_run_forever_serves_until_sigint_then_exits_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_FOREVER_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("URL http://127.0.0.1:"), line
        url = line.split()[1]
        assert requests.get(f"{url}/ping", timeout=5).text == "pong"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err
    assert _port_is_closed(int(url.rsplit(":", 1)[1]))


@pytest.mark.socket
def test_serves_the_simulator_app() -> None:
    from mock_ci_server.app import create_app
    from mock_ci_server.state import SimState

    state = SimState()
    state.add_account("90001", "ServeToken0123456789abcdefghijk")
    state.seed("90001", orders=2, seed=1)
    with serve_in_thread(create_app(state)) as server:
        resp = requests.get(
            f"{server.url}/api/v4/get_orders",
            params={"supplier_id": "90001", "token": "ServeToken0123456789abcdefghijk"},
            timeout=5,
        )
        assert resp.headers["Content-Type"].startswith("text/json")
        assert resp.json()["meta"]["no_of_items"] == 2
        health = requests.get(f"{server.url}/_sim/health", timeout=5)
        assert health.json()["status"] == "ok"


def test_stop_survives_a_closed_wakeup_pipe() -> None:
    """stop() must not raise at teardown when waitress's trigger fd is already gone."""
    import requests
    from flask import Flask

    from mock_ci_server.serve import serve_in_thread

    app = Flask("tiny")
    app.add_url_rule("/", "root", lambda: "ok")
    server = serve_in_thread(app)
    assert requests.get(server.url + "/", timeout=5).text == "ok"
    server._server.trigger.close()  # what the failing run saw: the pipe closed under us
    server.stop(timeout=2)
    assert not server.running
