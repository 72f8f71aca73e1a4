"""``ci-connector status`` shows who holds an account's lock and which outbound calls are
claimed (leased) by whom until when, on both ledger backends, without secrets."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.config import load_config
from connector.ledger import open_ledger
from connector.runtime.identity import machine_name
from connector.runtime.pglock import account_lock
from tests.ledger_backends import LedgerBackend

TOKEN = "status-SECRET-0123456789abcdefghij"
ELSEWHERE = "other-machine:4242:tok3n"  # a process on another machine


def _config(tmp_path: Path, backend: LedgerBackend) -> Path:
    url = f'ledger_url = "{backend.url}"\n' if backend.url else ""
    config = tmp_path / "connector.toml"
    config.write_text(
        f'[connector]\ndata_dir = "data"\n{url}\n'
        '[[accounts]]\nname = "us"\nsupplier_id = "68001"\n'
        'base_url = "http://127.0.0.1:9"\ntoken_env = "STATUS_TOKEN"\n\n'
        "[accounts.options]\nlock_timeout_seconds = 0.3\n",
        encoding="utf-8",
    )
    return config


def _status(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["--config", str(config), "status", *args], env={"STATUS_TOKEN": TOKEN}
    )
    return result.exit_code, result.output


def test_status_shows_the_lock_holder_and_the_claims(
    ledger_backend: LedgerBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATUS_TOKEN", TOKEN)
    config = _config(tmp_path, ledger_backend)
    account = load_config(config).account("us")
    now = datetime.now(UTC)
    ledger = open_ledger(account)
    try:
        for lid in (1, 2, 3):
            ledger.stage_line(ci_lineitemid=lid, orderid="O1", now=now, quantity=1)
        ledger.bind_stored([(2, "H2"), (3, "H3")], now)
        row = ledger.insert_outbox(
            shipment_id="S1", ci_lineitemid=1, tracking="1Z999", quantity=1, now=now, orderid="O1"
        )
        assert ledger.claim_outbox(ledger.outbox_rows(ids=[row.id]), now, 600, owner=ELSEWHERE)
        assert ledger.claim_acks([2], now, 600, owner=ELSEWHERE) == [2]
        # A claim whose lease ran out an hour ago: free for anyone.
        assert ledger.claim_acks([3], now - timedelta(hours=1), 600, owner=ELSEWHERE) == [3]
    finally:
        ledger.close()

    lock = account_lock(account)
    lock.acquire(5)  # this process works the account
    try:
        code, out = _status(config, "--json")
    finally:
        lock.close()
    # The plugin's held-lines call waited for the lock and gave up: the account failed, but
    # the lock and the claims read before it show who holds what.
    assert code == 1
    failure = json.loads(out)["failures"][0]
    assert "is busy" in failure["error"]
    assert failure["lock"]["held"] is True
    assert failure["lock"]["holder"].startswith(f"pid {os.getpid()} on {machine_name()} since ")
    claims = {(c["kind"], c["ci_lineitemid"]): c for c in failure["claims"]}
    assert set(claims) == {("tracking", 1), ("ack", 2), ("ack", 3)}
    tracking = claims[("tracking", 1)]
    assert (tracking["shipment_id"], tracking["tracking"], tracking["orderid"]) == (
        "S1",
        "1Z999",
        "O1",
    )
    assert tracking["owner"] == "other-machine:4242"
    assert tracking["state"] == "active"
    assert abs(datetime.fromisoformat(tracking["until"]) - (now + timedelta(seconds=600))) < (
        timedelta(seconds=1)
    )
    assert claims[("ack", 2)]["state"] == "active"
    assert claims[("ack", 3)]["state"] == "expired"

    code, out = _status(config, "--json")  # the lock is free now
    assert code == 0, out
    report = json.loads(out)["accounts"][0]
    assert report["lock"] == {"held": False, "holder": None}
    assert len(report["claims"]) == 3

    code, text = _status(config)
    assert code == 0, text
    assert "account lock: free" in text
    assert "claimed calls (leases): 3" in text
    assert "other-machine:4242" in text
    for out_text in (out, text):
        assert TOKEN not in out_text
        assert "tok3n" not in out_text  # the owner's run token is not shown either


def test_status_names_a_lock_holder_in_another_process_and_a_gone_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the file lock held by another process is reported with its pid; a claim of a
    process of this machine that no longer runs is 'owner gone'."""
    import subprocess
    import sys

    monkeypatch.setenv("STATUS_TOKEN", TOKEN)
    config = _config(tmp_path, LedgerBackend("sqlite", None))
    account = load_config(config).account("us")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    now = datetime.now(UTC)
    ledger = open_ledger(account)
    try:
        ledger.stage_line(ci_lineitemid=7, orderid="O7", now=now, quantity=1)
        ledger.bind_stored([(7, "H7")], now)
        owner = f"{machine_name()}:{int(dead.stdout)}:x"
        assert ledger.claim_acks([7], now, 600, owner=owner) == [7]
    finally:
        ledger.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from connector.runtime.locks import FileAccountLock, lock_path\n"
            f"lock = FileAccountLock(lock_path({str(account.data_dir)!r}, 'us'), 'us')\n"
            "lock.acquire(5)\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        code, out = _status(config, "--json")
    finally:
        holder.kill()
        holder.wait()
    assert code == 1  # busy: its held lines could not be read
    failure = json.loads(out)["failures"][0]
    assert failure["lock"]["holder"].startswith(f"pid {holder.pid} on {machine_name()} since ")
    assert failure["claims"][0]["state"] == "owner gone"
    code, out = _status(config, "--json")  # the holder died: the kernel freed its lock
    assert code == 0, out
    assert json.loads(out)["accounts"][0]["lock"] == {"held": False, "holder": None}
