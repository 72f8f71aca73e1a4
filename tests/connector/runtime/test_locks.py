"""Cross-process exclusion per account: the file lock, its holder, AccountBusy, SIGKILL."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import pytest

from connector.errors import AccountBusy, ChannelError, LedgerError
from connector.runtime.identity import machine_name
from connector.runtime.locks import FileAccountLock, lock_path

HOLD_SCRIPT = """
import sys, time
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from connector.runtime.locks import FileAccountLock
lock = FileAccountLock(Path(sys.argv[1]), "us")
lock.acquire(5)
print("held", flush=True)
time.sleep(60)
"""


def _holder_process(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_busy_names_the_holder_pid_host_and_since(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "us")
    proc = _holder_process(path)
    try:
        lock = FileAccountLock(path, "us")
        started = time.monotonic()
        with pytest.raises(AccountBusy) as caught:
            lock.acquire(0.3)
        waited = time.monotonic() - started
        assert 0.25 <= waited < 5
        assert isinstance(caught.value, ChannelError)  # hosts catch ChannelError
        message = str(caught.value)
        assert f"pid {proc.pid} on {machine_name()} since 20" in message
        assert "lock_timeout_seconds" in message
        assert caught.value.account == "us"
        assert str(proc.pid) in caught.value.holder
    finally:
        proc.kill()
        proc.wait()


def test_sigkill_of_the_holder_frees_the_account_at_once(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "us")
    proc = _holder_process(path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock = FileAccountLock(path, "us")
    lock.acquire(2)  # the kernel dropped the dead holder's flock
    assert lock.holder()["pid"] == os.getpid()
    lock.release()
    assert lock.holder() == {}  # no stale holder left behind


def test_reentrant_in_one_thread_and_exclusive_between_instances(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "us")
    first, second = FileAccountLock(path, "us"), FileAccountLock(path, "us")
    first.acquire(1)
    first.acquire(1)  # nested hook call of the same caller
    first.release()
    with pytest.raises(AccountBusy):
        second.acquire(0.1)  # still held once
    first.release()
    second.acquire(1)
    second.release()
    with pytest.raises(RuntimeError, match="released more often"):
        second.release()


def test_lock_file_is_private(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "us")
    lock = FileAccountLock(path, "us")
    lock.acquire(1)
    lock.release()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unusable_folder_is_a_ledger_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    lock = FileAccountLock(tmp_path / "file" / "x.lock", "us")
    with pytest.raises(LedgerError, match="cannot open the lock file"):
        lock.acquire(0.1)


def test_lock_file_kept_open_between_calls_and_unlocked(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "made", "us")  # the folder is made on first use
    lock, other = FileAccountLock(path, "us"), FileAccountLock(path, "us")
    lock.acquire(1)
    first_fd = lock._fd
    lock.release()
    assert lock.holder() == {}
    other.acquire(0.1)  # the descriptor kept open holds no lock
    other.release()
    lock.acquire(1)
    assert lock._fd == first_fd  # no new open per call
    with pytest.raises(AccountBusy):
        other.acquire(0.1)
    lock.release()
    lock.close()
    other.close()


def test_lock_file_replaced_between_calls_is_locked_anew(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "us")
    lock = FileAccountLock(path, "us")
    lock.acquire(1)
    lock.release()
    path.unlink()  # e.g. an operator cleaned the folder: the kept descriptor is stale
    proc = _holder_process(path)  # a new process locks the new file at the path
    try:
        with pytest.raises(AccountBusy):
            lock.acquire(0.2)
    finally:
        proc.kill()
        proc.wait()
    lock.acquire(2)
    assert lock.holder()["pid"] == os.getpid()
    assert lock._fd is not None
    assert os.fstat(lock._fd).st_ino == path.stat().st_ino
    lock.release()
    lock.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_share_the_kept_descriptor(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "us")
    lock = FileAccountLock(path, "us")
    lock.acquire(1)
    lock.release()  # descriptor kept open: the child inherits it
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: locks through the same object, then holds until told
        try:
            lock.acquire(1)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1"
        # Had the child locked the inherited open file, this flock (same open file) would
        # succeed too: both would work the account.
        with pytest.raises(AccountBusy):
            lock.acquire(0.2)
    finally:
        os.write(done_w, b"1")
        os.waitpid(pid, 0)
    lock.acquire(2)
    lock.release()
    lock.close()


def test_longer_stale_holder_text_is_cut_to_ours(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "us")
    path.write_text('{"pid": 1, "host": "' + "x" * 300 + '", "since": "2020"}')  # killed holder
    lock = FileAccountLock(path, "us")
    lock.acquire(1)
    assert lock.holder()["pid"] == os.getpid()  # the whole file is our JSON
    lock.release()
    assert path.read_text() == ""
    lock.close()


def test_stale_text_left_between_calls_is_cut_on_the_kept_descriptor(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "us")
    lock = FileAccountLock(path, "us")
    lock.acquire(1)
    lock.release()  # descriptor kept, its file known
    with path.open("r+") as other:  # a holder of another process killed while holding
        other.write('{"pid": 1, "host": "' + "x" * 300 + '", "since": "2020"}')
    lock.acquire(1)
    assert lock.holder()["pid"] == os.getpid()  # the whole file is our JSON again
    lock.release()
    assert path.read_text() == ""
    lock.close()


def test_holder_text_follows_the_clock_and_the_pid(tmp_path: Path) -> None:
    moments = iter(
        [
            datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC),
            datetime(2026, 1, 1, 10, 0, 0, 500, UTC),  # the same second: the same text
            datetime(2026, 1, 1, 10, 0, 1, tzinfo=UTC),
        ]
    )

    class Clock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Clock:
            moment = next(moments)
            return cls.fromtimestamp(moment.timestamp(), tz)

    path = lock_path(tmp_path, "us")
    lock = FileAccountLock(path, "us", clock=Clock)
    seen = []
    for _ in range(3):
        lock.acquire(1)
        seen.append(lock.holder())
        lock.release()
    lock.close()
    assert [h["since"] for h in seen] == [
        "2026-01-01T10:00:00+00:00",
        "2026-01-01T10:00:00+00:00",
        "2026-01-01T10:00:01+00:00",
    ]
    assert {h["pid"] for h in seen} == {os.getpid()}
    assert {h["host"] for h in seen} == {machine_name()}
