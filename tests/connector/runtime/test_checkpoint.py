"""WalCheckpointer: WAL checkpoints of a SQLite file off the committing thread."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from connector.runtime import checkpoint
from connector.runtime.checkpoint import WalCheckpointer


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA wal_autocheckpoint={checkpoint.BACKSTOP_PAGES}")
    conn.execute("CREATE TABLE t (x TEXT)")
    return conn


def _rows_in_file(path: Path) -> int:
    """Rows in the database file itself, WAL ignored (what checkpoints have copied)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    except sqlite3.DatabaseError:
        # Not even the table copied yet, or (immutable=1 takes no lock) a page read while
        # the checkpoint thread writes it: the caller looks again.
        return 0
    finally:
        conn.close()


def test_small_wal_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = _writer(path)
    cp = WalCheckpointer(path, threshold_bytes=10_000_000)
    conn.execute("INSERT INTO t VALUES ('a')")
    cp.after_commit()
    assert not cp.running
    cp.close()
    conn.close()


def test_big_wal_is_copied_into_the_file_by_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "INTERVAL", 0.01)
    path = tmp_path / "db.sqlite3"
    conn = _writer(path)
    cp = WalCheckpointer(path, threshold_bytes=64 * 1024)
    for _ in range(50):  # ~50 pages of WAL, far below the writer's own autocheckpoint
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 3000,))
        cp.after_commit()
    assert cp.running
    deadline = time.monotonic() + 10
    while _rows_in_file(path) < 50 and time.monotonic() < deadline:
        cp.after_commit()  # the thread checkpoints after commits; nudge as a writer would
        time.sleep(0.02)
    assert _rows_in_file(path) == 50
    cp.close()
    assert not cp.running
    cp.after_commit()  # after close: nothing starts again
    assert not cp.running
    conn.close()


def test_no_file_no_thread(tmp_path: Path) -> None:
    cp = WalCheckpointer(tmp_path / "missing.sqlite3", threshold_bytes=0)
    cp.after_commit()  # no WAL to stat: nothing starts, nothing raises
    assert not cp.running
    cp.close()


@pytest.mark.parametrize("page_size", [4096, 8192])
def test_attach_makes_the_connection_a_backstop_and_starts_at_its_own_pages(
    tmp_path: Path, page_size: int
) -> None:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("PRAGMA journal_mode=WAL")
    cp = checkpoint.attach(conn, path)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == checkpoint.BACKSTOP_PAGES
    assert cp._threshold == checkpoint.START_PAGES * page_size
    cp.close()
    conn.close()


def _wal_bytes(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size


def test_commits_during_the_threads_checkpoint_do_not_keep_the_wal_from_starting_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that commits while the thread copies leaves frames behind; the committing
    connection copies them at its next commit, so the WAL starts over from its beginning
    (written in place) instead of growing with every commit."""
    monkeypatch.setattr(checkpoint, "START_PAGES", 0)  # the thread starts at the first commit
    monkeypatch.setattr(checkpoint, "INTERVAL", 60.0)  # and checkpoints once in this test
    path = tmp_path / "db.sqlite3"
    conn = _writer(path)
    cp = checkpoint.attach(conn, path)
    # A reader on the snapshot before the inserts keeps the thread's checkpoint from copying
    # them: the state a commit made while the checkpoint ran leaves.
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM t").fetchall()
    for _ in range(20):
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 3000,))
    cp.after_commit()
    deadline = time.monotonic() + 10
    while not cp._to_finish and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cp._to_finish, "the thread did not checkpoint"
    assert _rows_in_file(path) == 0  # the reader held it back
    reader.execute("COMMIT")
    reader.close()
    conn.execute("INSERT INTO t VALUES ('c')")  # appended: the WAL is not wholly copied
    cp.after_commit()  # finishes the thread's checkpoint on this connection
    assert _rows_in_file(path) == 21
    grown = _wal_bytes(path)
    conn.execute("INSERT INTO t VALUES (?)", ("d" * 3000,))
    assert _wal_bytes(path) == grown, "the WAL grew: it did not start over"
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 22
    cp.close()
    conn.close()


class _Passes:
    """A connection whose ``PRAGMA wal_checkpoint`` answers (busy, frames, copied) in turn."""

    def __init__(self, *answers: tuple[int, int, int]) -> None:
        self.answers = list(answers)
        self.passes = 0

    def execute(self, sql: str) -> _Passes:
        assert sql == "PRAGMA wal_checkpoint(PASSIVE)"
        self.passes += 1
        return self

    def fetchone(self) -> tuple[int, int, int]:
        return self.answers.pop(0)


@pytest.mark.parametrize(
    ("answers", "caught_up", "passes"),
    [
        # 40 frames committed during the first pass: the committing connection finishes it.
        (((0, 900, 900), (0, 940, 940)), True, 2),
        # A writer too fast for it (an import staging): given up, the WAL grows as before.
        (((0, 1000, 1000), (0, 2000, 2000), (0, 3000, 3000), (0, 4000, 4000)), False, 4),
        # Slower than the writer at first, then close behind it.
        (((0, 1000, 1000), (0, 1800, 1800), (0, 1900, 1900)), True, 3),
        # Another connection was checkpointing: nothing to finish.
        (((1, -1, -1),), False, 1),
    ],
)
def test_the_thread_asks_for_a_finish_only_once_it_caught_up_with_the_writer(
    tmp_path: Path, answers: tuple[tuple[int, int, int], ...], caught_up: bool, passes: int
) -> None:
    cp = WalCheckpointer(tmp_path / "db.sqlite3", threshold_bytes=0)
    conn = _Passes(*answers)
    assert cp._catch_up(conn) is caught_up  # type: ignore[arg-type]
    assert conn.passes == passes
    # The cases above are written for these limits.
    assert checkpoint.FINISH_FRAMES == 128
    assert checkpoint.CATCH_UP_PASSES == 4
