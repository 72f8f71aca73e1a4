"""``ci-connector dashboard`` and the sync log written by ``ci-connector sync``."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.dashboard.synclog import read_syncs, sync_log_path
from tests.connector.dashboard.conftest import TOKEN, Synced, later


def test_sync_writes_the_log_with_retries(synced: Synced) -> None:
    entries, bad = read_syncs(synced.data_dir)
    assert bad == 0
    assert len(entries) == 2
    newest, oldest = entries
    assert oldest["counts"]["orders_imported"] > 0
    assert newest["counts"]["orders_imported"] == 6
    assert newest["transport_retries"] == {"503": 1}
    assert stat.S_IMODE(sync_log_path(synced.data_dir).stat().st_mode) == 0o600
    assert TOKEN not in sync_log_path(synced.data_dir).read_text()


def test_sync_log_that_cannot_be_written_only_warns(synced: Synced) -> None:
    path = sync_log_path(synced.data_dir)
    path.unlink()
    path.mkdir()  # appending to a directory fails with an OSError
    result = CliRunner().invoke(main, ["--config", str(synced.config), "sync"])
    assert result.exit_code in (0, 1)
    assert "warning: sync log not written" in result.output
    assert "Traceback" not in result.output


def test_render_writes_a_self_contained_page(synced: Synced, tmp_path: Path) -> None:
    out = tmp_path / "dash.html"
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(synced.config),
            "dashboard",
            "--render",
            str(out),
            "--now",
            later(synced, 1.5),
        ],
    )
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert '<svg class="timeline"' in html
    assert "Projected cap" in html
    assert 'id="syncs"' in html
    assert TOKEN not in html
    assert "http://" not in html.replace(str(synced.sim.url), "")  # nothing fetched from a host


def test_port_in_use_is_a_clean_error(synced: Synced) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            main, ["--config", str(synced.config), "dashboard", "--port", str(port)]
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "--port 0" in result.output


def test_serves_until_ctrl_c(synced: Synced) -> None:
    env = {**os.environ, "DASH_CI_TOKEN": TOKEN}
    code = "from connector.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--config", str(synced.config), "dashboard", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("dashboard: http://127.0.0.1:")
        url = first.split()[1]
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback URL
            page = answer.read().decode("utf-8")
        assert "Held lines" in page
        assert TOKEN not in page
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "nothing", timeout=30)  # noqa: S310
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "dashboard stopped" in out


def test_dashboard_imports_no_simulator_or_flask() -> None:
    code = (
        "import sys, connector.cli.dashboard, connector.dashboard.server, "
        "connector.dashboard.data, connector.dashboard.render;"
        "bad = [m for m in ('mock_ci_server', 'flask', 'werkzeug') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
