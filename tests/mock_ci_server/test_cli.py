"""mock-ci-server CLI: help, option errors, and a real start/serve/SIGINT cycle."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from click.testing import CliRunner

from mock_ci_server.cli import TOKEN_LENGTH, curl_example, generate_token, main


def test_help_shows_options_and_an_example() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in ("--port", "--seed-orders", "--supplier-id", "--token", "--error-status-codes"):
        assert option in result.output
    assert "Examples:" in result.output
    assert "mock-ci-server --port 0" in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--port", "70000"], "--port"),
        (["--level", "9"], "--level"),
        (["--region", "XX"], "--region"),
        (["--seed-orders", "-1"], "--seed-orders"),
        (["--threads", "0"], "--threads"),
        (["--supplier-id", " "], "--supplier-id"),
        (["--token", ""], "--token"),
        (["--bogus"], "No such option"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["--port", str(port), "--seed-orders", "0"])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_generated_token_shape() -> None:
    tokens = {generate_token() for _ in range(5)}
    assert len(tokens) == 5
    for token in tokens:
        assert len(token) == TOKEN_LENGTH
        assert token.isalnum()


def test_curl_example_uses_the_actual_token_source() -> None:
    # Issue 12: a token given with --token used to be printed as $CI_TOKEN, a variable the
    # user never set. Now: a placeholder for a typed token, $VAR for one from the environment.
    assert curl_example("http://h:1", "90001") == (
        'curl "http://h:1/api/v4/get_orders?supplier_id=90001&token=YOUR_TOKEN"'
    )
    assert curl_example("http://h:1", "90001", token_env="MOCK_CI_TOKEN") == (
        'curl "http://h:1/api/v4/get_orders?supplier_id=90001&token=$MOCK_CI_TOKEN"'
    )
    assert "tok123" in curl_example("http://h:1", "90001", "tok123")


@contextmanager
def running_cli(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mock_ci_server.cli", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("control plane:"):
                break
        else:
            pytest.fail(
                f"CLI ended before serving: {lines} {proc.stderr.read() if proc.stderr else ''}"
            )
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=10)


def test_serves_demo_account_until_sigint() -> None:
    with running_cli("--seed-orders", "3", "--seed", "4") as (proc, lines):
        text = "\n".join(lines)
        url = re.search(r"serving on (http://127\.0\.0\.1:\d+)", text)
        assert url is not None, text
        token = re.search(r"token\s+([A-Za-z0-9]{31})\s+\(generated demo token\)", text)
        assert token is not None, text
        assert "supplier_id=90001" in text
        curl = next(line for line in lines if line.strip().startswith("curl "))
        assert token.group(1) in curl
        # The printed curl URL works as printed.
        printed_url = curl.strip()[len("curl ") :].strip("'\"")
        body = requests.get(printed_url, timeout=5).json()
        assert body["success"] is True
        assert body["meta"]["no_of_items"] == 3
        assert len(body["data"]) == 3
        bad = requests.get(
            f"{url.group(1)}/api/v4/get_orders",
            params={"supplier_id": "90001", "token": "wrong"},
            timeout=5,
        )
        assert bad.status_code == 401  # issue 12: credential failures are 4xx by default
        assert bad.json()["success"] is False
        # The printed connector.toml block names this server and the token's variable.
        assert f'base_url = "{url.group(1)}"' in text
        assert 'supplier_id = "90001"' in text
        assert f"# export CI_TOKEN_90001={token.group(1)}" in text
        out, err = _interrupt(proc)
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert "Traceback" not in err


def test_given_credentials_and_error_status_codes() -> None:
    secret = "GivenToken0123456789abcdefghijk"
    with running_cli(
        "--supplier-id", "12345", "--token", secret, "--region", "IT", "--error-status-codes",
        "--seed-orders", "0",
    ) as (proc, lines):  # fmt: skip
        text = "\n".join(lines)
        assert secret not in text
        assert "supplier_id=12345 region=IT" in text
        url = re.search(r"serving on (\S+)", text)
        assert url is not None
        ok = requests.get(
            f"{url.group(1)}/api/v4/get_orders",
            params={"supplier_id": "12345", "token": secret},
            timeout=5,
        )
        assert ok.json()["meta"]["no_of_items"] == 0
        bad = requests.get(
            f"{url.group(1)}/api/v4/get_orders",
            params={"supplier_id": "12345", "token": "nope"},
            timeout=5,
        )
        assert bad.status_code == 401
        out, err = _interrupt(proc)
    assert proc.returncode == 0, err
    assert secret not in out + err


def test_version_and_range_options() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("mock-ci-server, version ")
    for bad in ("0", "3-1", "x", "1-"):
        out = CliRunner().invoke(main, ["--lines-per-order", bad])
        assert out.exit_code == 2
        assert "--lines-per-order" in out.output
    out = CliRunner().invoke(main, ["--split-share", "1.5"])
    assert out.exit_code == 2


def test_token_from_env_lines_split_and_request_log_on_stderr() -> None:
    secret = "EnvToken0123456789abcdefghijklm"
    env = {**os.environ, "MOCK_CI_TOKEN": secret}
    with running_cli(
        "--seed-orders", "40", "--lines-per-order", "2-3", "--split-share", "1",
        "--log-requests", env=env,
    ) as (proc, lines):  # fmt: skip
        text = "\n".join(lines)
        assert secret not in text
        assert "(from $MOCK_CI_TOKEN; not echoed)" in text
        curl = next(line for line in lines if line.strip().startswith("curl "))
        assert "token=$MOCK_CI_TOKEN" in curl
        assert 'token_env = "MOCK_CI_TOKEN"' in text
        url = re.search(r"serving on (\S+)", text)
        assert url is not None
        answer = requests.get(
            f"{url.group(1)}/api/v4/get_orders",
            params={"supplier_id": "90001", "token": secret},
            timeout=5,
        ).json()
        # 40 orders of 2-3 lines each, every one split: the first order's other records sit
        # after the first records of all 40 orders (the listing is shorter than a page).
        orderids = [r["orderid"] for r in answer["data"]]
        assert 80 <= answer["meta"]["no_of_items"] <= 120
        assert len(set(orderids)) == 40
        first = [i for i, oid in enumerate(orderids) if oid == orderids[0]]
        assert first[0] == 0
        assert min(first[1:]) >= 40
        out, err = _interrupt(proc)
    assert proc.returncode == 0, err
    log_lines = [ln for ln in err.splitlines() if "/api/v4/get_orders" in ln]
    assert len(log_lines) == 1, err
    assert "token=********" in log_lines[0]
    assert "-> 200 success=true" in log_lines[0]
    assert secret not in out + err
