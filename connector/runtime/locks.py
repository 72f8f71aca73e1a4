"""Exclusion per account across threads, processes and (with a shared database) machines.

One account is worked by one caller at a time, for the whole hook call. :class:`AccountLock`
is the interface; :class:`FileAccountLock` implements it for the SQLite ledger with an OS
file lock (``flock``) on ``<data_dir>/ledger-<account>.lock``: the kernel releases it when the
holder dies, even by SIGKILL, so a crash never leaves an account locked. A backend with a
server (PostgreSQL) implements the same protocol with an advisory lock.

The holder writes who it is (pid, machine, since) into the lock file, so a caller that gives
up after ``timeout`` seconds raises :class:`~connector.errors.AccountBusy` naming it.

``fcntl.flock`` rather than the ``filelock`` package: the same system call without a further
dependency; holder details and re-entrancy need code of ours either way.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from connector.errors import AccountBusy, LedgerError
from connector.runtime.files import PRIVATE_MODE
from connector.runtime.identity import machine_name

__all__ = ["AccountLock", "FileAccountLock", "Holder", "account_busy", "lock_path"]

_POLL_SECONDS = 0.05


def account_busy(account: str, who: str, timeout: float) -> AccountBusy:
    """The error of every lock implementation when ``who`` kept ``account`` past ``timeout``."""
    return AccountBusy(
        f"account {account} is busy: {who} is working it (waited {timeout:g} s; "
        "lock_timeout_seconds sets the wait). Nothing was done; try again when it is done.",
        account=account,
        holder=who,
    )


class Holder(dict[str, object]):
    """What a lock file says about its holder: ``pid``, ``host`` (machine), ``since``."""

    def describe(self) -> str:
        if not self:
            return "an unknown process"
        pid, host, since = (self.get(k, "?") for k in ("pid", "host", "since"))
        return f"pid {pid} on {host} since {since}"


class AccountLock(Protocol):
    """Re-entrant, cross-process exclusion for one account."""

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds; raise :class:`AccountBusy` naming the holder."""

    def release(self) -> None:
        """Undo one :meth:`acquire` (the lock is free once every acquire was released)."""

    def close(self) -> None:
        """Release everything held and free the resources."""


def lock_path(data_dir: Path, account_name: str) -> Path:
    """The lock file of ``account_name`` (beside its ledger)."""
    return Path(data_dir) / f"ledger-{account_name}.lock"


class FileAccountLock:
    """:class:`AccountLock` over ``flock`` on a file. Re-entrant within one thread; other
    threads of the process wait on an in-process lock first, so they see the same timeout.

    Two instances on one file exclude each other even inside one process (``flock`` locks
    belong to the open file, not to the process).
    """

    def __init__(self, path: Path, account: str, *, clock: type[datetime] = datetime) -> None:
        self.path = Path(path)
        self.account = account
        self._clock = clock
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        # The lock file stays open between calls (unlocked): a hook call in a loop (one
        # shipment each) then pays one flock, not mkdir + open + close. Kept with the pid that
        # opened it: a forked child shares the open file (and so the flock) with its parent
        # and must open its own.
        self._idle: tuple[int, int] | None = None  # (fd, pid)
        self._machine: str | None = None
        # (device, inode) of the open descriptor's file, taken once per open: a descriptor
        # keeps its file for life, so each acquire stats only the path (no fstat).
        self._fd_file: tuple[int, int, int] | None = None  # (fd, device, inode)
        # The holder text last written, by (pid, since): a hook called in a loop writes the
        # same text for a whole second, encoded once.
        self._text: tuple[int, str, bytes] | None = None

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._thread_lock.acquire(timeout=max(timeout, 0.0)):
            raise self._busy(timeout, Holder(pid=os.getpid(), host=machine_name(), since="?"))
        try:
            if self._depth == 0:
                self._lock_file(deadline, timeout)
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def _open(self) -> int:
        """The lock file's descriptor: the one kept from the last call, or a new one."""
        idle, self._idle = self._idle, None
        if idle is not None:
            fd, pid = idle
            if pid == os.getpid():
                return fd
            # A forked child: closing its copy leaves the parent's flock alone (only the last
            # descriptor of the open file, or LOCK_UN, releases it).
            os.close(fd)
        self._fd_file = None  # a new descriptor (perhaps of the same number): stat it anew
        try:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
            except FileNotFoundError:  # the folder is missing: made once, here
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        except OSError as exc:
            raise LedgerError(
                f"account {self.account}: cannot open the lock file {self.path}: {exc.strerror}"
            ) from None

    def _size_at_path(self, fd: int) -> int | None:
        """The size of ``fd``'s file, or ``None`` when it is no longer the file at the path
        (deleted or replaced since it was opened: a flock on a file nobody else opens
        excludes nobody)."""
        known = self._fd_file
        if known is None or known[0] != fd:
            here = os.fstat(fd)
            known = self._fd_file = (fd, here.st_dev, here.st_ino)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return None
        if (known[1], known[2]) != (there.st_dev, there.st_ino):
            return None
        # The size without a stat result: the offset of the end (nothing reads or writes
        # this descriptor at its offset: the text goes by pwrite, holder() opens the path).
        return os.lseek(fd, 0, os.SEEK_END)

    def _holder_text(self) -> bytes:
        """What the lock file says while we hold it: pid, machine and since, as JSON."""
        pid = os.getpid()
        since = self._clock.now(UTC).isoformat(timespec="seconds")
        last = self._text
        if last is not None and last[0] == pid and last[1] == since:
            return last[2]
        if self._machine is None:
            self._machine = machine_name()
        data = json.dumps({"pid": pid, "host": self._machine, "since": since}).encode()
        self._text = (pid, since, data)
        return data

    def _lock_file(self, deadline: float, timeout: float) -> None:
        while True:
            fd = self._open()
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                            raise
                    if time.monotonic() >= deadline:
                        raise self._busy(timeout, self.holder())
                    time.sleep(_POLL_SECONDS)
                size = self._size_at_path(fd)
                if size is None:
                    os.close(fd)  # releases the flock of the stale file; open the path again
                    continue
                data = self._holder_text()
                os.pwrite(fd, data, 0)
                if size > len(data):  # a holder killed before its release left a longer text
                    os.ftruncate(fd, len(data))
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return

    def holder(self) -> Holder:
        """Who holds (or last held) the lock, from the lock file; empty when unknown."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return Holder()
        return Holder(data) if isinstance(data, dict) else Holder()

    def _busy(self, timeout: float, holder: Holder) -> AccountBusy:
        return account_busy(self.account, holder.describe(), timeout)

    def release(self) -> None:
        if self._depth <= 0:
            raise RuntimeError(f"account lock {self.path} released more often than acquired")
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.ftruncate(fd, 0)  # no stale holder for the next reader
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except BaseException:
                    os.close(fd)  # closing the last descriptor releases the flock too
                    raise
                self._idle = (fd, os.getpid())  # kept open for the next acquire
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            idle, self._idle = self._idle, None
            if idle is not None:
                os.close(idle[0])
            self._depth = 0
