"""Simulator hardening (issue 9): body limit, JSON depth, idle connections, control token, CLI.

Before the fix: a 200 MB JSON POST took the simulator from 46 to 645 MB; JSON nested 1,000
deep answered 500 on /_sim/*; 300 idle connections starved normal requests; /_sim/ was open
to anyone and ``--host 0.0.0.0`` started without a word; ``--token`` was visible in ``ps``.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from flask.testing import FlaskClient

from mock_ci_server import cli
from mock_ci_server.app import MAX_BODY_BYTES, create_app
from mock_ci_server.jsonlimits import MAX_JSON_DEPTH
from mock_ci_server.launch_guard import CONTROL_TOKEN_ENV, TOKEN_ENV
from mock_ci_server.serve import is_loopback, serve_in_thread
from mock_ci_server.state import SimState

from .conftest import SUPPLIER, TOKEN

CONTROL = "ctl-Secret-0123456789abcdefXYZ"


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# --- body limit ------------------------------------------------------------------------------


def test_oversized_bodies_get_413_in_the_envelope(api: FlaskClient) -> None:
    big = b"x" * (MAX_BODY_BYTES + 1)
    control = api.post("/_sim/seed", data=big, content_type="application/json")
    assert control.status_code == 413
    assert control.get_json()["success"] is False
    assert "too large" in control.get_json()["reason"]
    ci = api.post(
        "/api/v4/mark_exported", data=big, content_type="application/x-www-form-urlencoded"
    )
    assert ci.status_code == 413
    assert ci.content_type.startswith("text/json")  # CI's envelope, not an HTML page
    assert json.loads(ci.get_data(as_text=True))["success"] is False


def test_a_huge_multipart_form_field_is_413_naming_the_field_limit(api: FlaskClient) -> None:
    response = api.post(
        "/api/v4/mark_exported",
        data={
            "supplier_id": SUPPLIER,
            "token": TOKEN,
            "ci_lineitem_ids": "[" + "1," * 300_000 + "1]",
            "file": (io.BytesIO(b"x"), "x.txt"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    reason = json.loads(response.get_data(as_text=True))["reason"]
    assert reason.startswith("a form field is larger than 500,000 bytes")


@pytest.mark.socket
def test_waitress_refuses_a_huge_body_before_buffering_it(sim_state: SimState) -> None:
    with (
        serve_in_thread(create_app(sim_state)) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        # Announce 200 MB, send 1 KB: the answer must come without the rest being sent.
        sock.sendall(
            b"POST /_sim/seed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200000000\r\n\r\n" + b"[" * 1024
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(payload)["success"] is False
    assert "too large" in json.loads(payload)["reason"]


# --- JSON depth --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/_sim/seed",
        "/_sim/faults",
        "/_sim/accounts",
        "/_sim/clock",
        "/_sim/cancel",
        "/_sim/config",
        "/_sim/gpn/clients",
        "/_sim/gpn/seed",
    ],
)
@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
def test_deep_json_is_400_never_500_on_the_control_plane(
    api: FlaskClient, path: str, levels: int
) -> None:
    response = api.post(path, data=deep(levels), content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    out = response.get_json()
    reason = out["reason"] if "reason" in out else out["error"]["message"]
    assert "nested deeper than 64" in reason


@pytest.mark.parametrize("field", ["ci_lineitem_ids", "tracking_info"])
def test_deep_json_field_is_400_in_the_ci_envelope(api: FlaskClient, field: str) -> None:
    endpoint = "mark_exported" if field == "ci_lineitem_ids" else "tracking_notification"
    response = api.post(
        f"/api/v4/{endpoint}",
        data={"supplier_id": SUPPLIER, "token": TOKEN, field: deep(1_000)},
    )
    assert response.status_code == 400
    out = json.loads(response.get_data(as_text=True))
    assert out == {"success": False, "reason": "JSON nested deeper than 64 levels; refused"}


def test_shallow_wide_json_still_works(api: FlaskClient) -> None:
    # 200 objects: more brackets than the depth limit, but only 3 levels deep.
    rules = [{"path": f"/api/v4/nothing{i}", "status": 503, "count": 1} for i in range(200)]
    response = api.post("/_sim/faults", json={"rules": rules, "seed": 1})
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["rules"]) == 200


# --- idle connections --------------------------------------------------------------------------


@pytest.mark.socket
@pytest.mark.slow
def test_300_idle_connections_do_not_starve_a_normal_request(sim_state: SimState) -> None:
    with serve_in_thread(create_app(sim_state)) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
        try:
            time.sleep(0.5)  # let the loop accept them all
            start = time.monotonic()
            response = requests.get(f"{server.url}/_sim/health", timeout=20)
            elapsed = time.monotonic() - start
        finally:
            for sock in idle:
                sock.close()
    assert response.status_code == 200
    assert elapsed < 10, f"a normal request waited {elapsed:.1f} s behind idle sockets"


@pytest.mark.socket
def test_idle_connections_are_closed_after_the_channel_timeout(sim_state: SimState) -> None:
    app = create_app(sim_state)
    with (
        serve_in_thread(app, channel_timeout=1, cleanup_interval=1) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock,
    ):
        start = time.monotonic()
        assert sock.recv(1) == b""  # the server hung up on the silent client
        assert time.monotonic() - start < 12


# --- control token -----------------------------------------------------------------------------


@pytest.fixture
def guarded(sim_state: SimState) -> FlaskClient:
    return create_app(sim_state, control_token=CONTROL).test_client()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/_sim/reset", None),
        ("get", "/_sim/state", None),
        ("get", "/_sim/accounts", None),
        ("post", "/_sim/accounts", {"supplier_id": SUPPLIER, "token": "stolen-token-123"}),
        ("post", "/_sim/faults", []),
        ("post", "/_sim/clock", {"advance_days": 30}),
        ("post", "/_sim/gpn/clients", {"client_id": "x", "token": "y"}),
        ("get", "/_sim//state", None),
    ],
)
def test_control_plane_refuses_without_the_token(
    guarded: FlaskClient, sim_state: SimState, method: str, path: str, body: Any
) -> None:
    before = sim_state.get_state(SUPPLIER)
    for headers in ({}, {"X-Sim-Control-Token": "wrong"}, {"Authorization": "Bearer wrong"}):
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        response = getattr(guarded, method)(path, **kwargs)
        assert response.status_code == 401, (path, headers)
        out = response.get_json()
        assert out["success"] is False
        assert "X-Sim-Control-Token" in out["reason"]
        assert CONTROL not in response.get_data(as_text=True)
    assert sim_state.get_state(SUPPLIER) == before  # nothing changed
    assert sim_state.authenticate(SUPPLIER, TOKEN) is not None


def test_control_plane_accepts_the_token(guarded: FlaskClient) -> None:
    assert guarded.get("/_sim/state", headers={"X-Sim-Control-Token": CONTROL}).status_code == 200
    bearer = {"Authorization": f"Bearer {CONTROL}"}
    assert guarded.post("/_sim/reset", headers=bearer).status_code == 200


def test_open_paths_stay_open_with_a_token(guarded: FlaskClient) -> None:
    assert guarded.get("/_sim/health").status_code == 200
    assert guarded.get("/_sim/openapi.json").status_code == 200
    export = guarded.get("/_sim/export/orders", query_string={"supplier_id": SUPPLIER})
    assert export.status_code == 400  # reached the route: it asks for the supplier's token
    assert guarded.get("/api/v4/get_orders", query_string={"supplier_id": SUPPLIER}).status_code


def test_no_token_means_open_control_plane(api: FlaskClient) -> None:
    assert api.get("/_sim/state").status_code == 200


# --- CLI: binds, token files, ps -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104 - the case under test
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace run_forever: the CLI checks run, nothing binds."""
    calls: list[Any] = []

    def fake(app: Any, host: str, port: int, threads: int, **kwargs: Any) -> None:
        calls.append((app, host, port))

    monkeypatch.setattr(cli, "run_forever", fake)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(CONTROL_TOKEN_ENV, raising=False)
    return calls


def test_non_loopback_bind_without_control_token_is_refused(no_serving: list[Any]) -> None:
    result = CliRunner().invoke(cli.main, ["--host", "0.0.0.0", "--seed-orders", "0"])  # noqa: S104
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in result.output
    assert no_serving == []


def test_non_loopback_bind_with_control_token_warns_loudly(
    no_serving: list[Any], tmp_path: Path
) -> None:
    secret = tmp_path / "ctl.token"
    secret.write_text(CONTROL + "\n")
    secret.chmod(0o600)
    result = CliRunner().invoke(
        cli.main,
        ["--host", "0.0.0.0", "--seed-orders", "0", "--control-token-file", str(secret)],  # noqa: S104
    )
    assert result.exit_code == 0, result.output
    assert "WARNING: mock-ci-server is listening on 0.0.0.0" in result.output
    assert CONTROL not in result.output
    ((app, host, _),) = no_serving
    assert host == "0.0.0.0"  # noqa: S104
    client = app.test_client()
    assert client.post("/_sim/reset").status_code == 401
    assert client.post("/_sim/reset", headers={"X-Sim-Control-Token": CONTROL}).status_code == 200


def test_token_file_and_env_give_the_account_token(
    no_serving: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "FileToken0123456789abcdefghijkl"
    path = tmp_path / "ci.token"
    path.write_text(secret + "\n")
    path.chmod(0o644)
    result = CliRunner().invoke(cli.main, ["--seed-orders", "0", "--token-file", str(path)])
    assert result.exit_code == 0, result.output
    assert "can be read by other users" in result.output
    assert secret not in result.output
    app = no_serving[-1][0]
    assert app.extensions["sim_state"].authenticate("90001", secret) is not None
    monkeypatch.setenv(TOKEN_ENV, "EnvToken0123456789abcdefghijklm")
    result = CliRunner().invoke(cli.main, ["--seed-orders", "0"])
    assert result.exit_code == 0, result.output
    assert "EnvToken" not in result.output
    assert "visible to every user" not in result.output
    app = no_serving[-1][0]
    assert app.extensions["sim_state"].authenticate("90001", "EnvToken0123456789abcdefghijklm")


def test_token_on_the_command_line_is_warned_about(no_serving: list[Any]) -> None:
    result = CliRunner().invoke(
        cli.main, ["--seed-orders", "0", "--token", "CliToken0123456789abcdefghijklm"]
    )
    assert result.exit_code == 0
    assert "--token on the command line is visible to every user in `ps`" in result.output


def test_token_file_conflicts_and_empty_files(no_serving: list[Any], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    result = CliRunner().invoke(cli.main, ["--token-file", str(empty)])
    assert result.exit_code == 2
    assert "is empty" in result.output
    result = CliRunner().invoke(cli.main, ["--token-file", str(empty), "--token", "abc"])
    assert result.exit_code == 2
    assert "not both" in result.output
    result = CliRunner().invoke(cli.main, ["--token-file", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


@pytest.mark.socket
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_token_file_keeps_the_token_out_of_ps(tmp_path: Path) -> None:
    secret = "PsToken0123456789abcdefghijklmn"
    path = tmp_path / "ci.token"
    path.write_text(secret)
    path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_ci_server.cli", "--port", "0", "--seed-orders", "1",
         "--token-file", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("control plane:"):
                break
        text = "".join(lines)
        assert secret not in text
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert secret not in cmdline
        url = re.search(r"serving on (\S+)", text)
        assert url is not None, text
        ok = requests.get(
            f"{url.group(1)}/api/v4/get_orders",
            params={"supplier_id": "90001", "token": secret},
            timeout=5,
        )
        assert ok.json()["success"] is True
    finally:
        proc.kill()
        proc.wait()
