"""WAL checkpoints of a SQLite file on a thread of their own (the ledger's, the reference
host's).

SQLite runs its automatic checkpoint inside the COMMIT that takes the WAL past 1,000 pages,
i.e. on the committing thread: the importer's main thread, which reads ~1,000 pages from the
WAL, writes them to the file and fsyncs it, several times per import and in phase 2 too,
where every second of that thread is import time. :class:`WalCheckpointer` moves that I/O to
a thread with its own connection (``PRAGMA wal_checkpoint(PASSIVE)``: it never blocks a
writer nor waits for one; SQLite releases the GIL while it runs).

The thread's checkpoint is finished on the committing connection, between two of its
transactions (:meth:`WalCheckpointer.after_commit`): a writer that commits while the thread
copies (a loop of one-shipment dispatches commits every few milliseconds) leaves frames the
thread did not copy, and SQLite starts the WAL over from its beginning only once every frame
is in the file. The thread first catches up (another pass while the last one let more than
:data:`FINISH_FRAMES` frames in behind it), so what is left to the committing connection is
small; under a writer too fast to catch up (an import staging its pages) it leaves the WAL
to grow until a quieter moment. Without the finishing step the WAL never started over: every
commit appended to a file growing up to the backstop (64 MB), so each write allocated and
zeroed new blocks and each fsync wrote the file's inode too. Measured on the development
machine's ext4: a durable commit of seven pages took 330-480 us appending and 160-180 us
overwriting a WAL started over (docs/reliability.md, issue 11 round 14).

Durability is unchanged: a commit is on disk once the COMMIT has synced its WAL frames; a
checkpoint only copies synced pages into the file (syncing the WAL before and the file after,
as the automatic one does), and a kill in the middle of one is repaired by SQLite on the next
open. The committing connection keeps an automatic checkpoint far past the usual size
(:data:`BACKSTOP_PAGES`), so the WAL stays bounded whatever happens to the thread.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import suppress
from pathlib import Path

__all__ = [
    "BACKSTOP_PAGES",
    "CATCH_UP_PASSES",
    "FINISH_FRAMES",
    "INTERVAL",
    "START_PAGES",
    "WalCheckpointer",
    "attach",
]

INTERVAL = 0.5
"""Seconds at least between two background checkpoints (each syncs the WAL and the file)."""
BACKSTOP_PAGES = 8000
"""``PRAGMA wal_autocheckpoint`` for the committing connection: only reached if the thread
falls behind (or could not start)."""
START_PAGES = 1000
"""WAL pages from which the thread checkpoints (SQLite's own automatic checkpoint size)."""
FINISH_FRAMES = 128
"""At most this many frames committed during the thread's last pass for the committing
connection to finish its checkpoint (about 1 MB of 8 KB pages: a few ms to copy and sync)."""
CATCH_UP_PASSES = 4
"""Checkpoint passes the thread makes at most to catch up with the writer."""


def attach(conn: sqlite3.Connection, path: Path) -> WalCheckpointer:
    """Make ``conn``'s automatic checkpoint the backstop and return the checkpointer of its
    file ``path``, started from :data:`START_PAGES` of the file's own page size (a file keeps
    the page size it was created with)."""
    conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return WalCheckpointer(path, START_PAGES * page, committer=conn)


class WalCheckpointer:
    """Checkpoints the WAL of ``path`` off the committing thread once it passes
    ``threshold_bytes``. Call :meth:`after_commit` after each commit (cheap: one ``stat``
    until the WAL first gets that big; the thread starts then, so small files never start
    it) and :meth:`close` before closing the committing connection (the last connection to
    close checkpoints and removes the WAL, as before). ``committer``, the committing
    connection, finishes each of the thread's checkpoints (see the module's docstring)."""

    def __init__(
        self, path: Path, threshold_bytes: int, committer: sqlite3.Connection | None = None
    ) -> None:
        self._path = Path(path)
        self._committer = committer
        # Set by the thread after a checkpoint that caught up, cleared by the commit that
        # finishes it.
        self._to_finish = False
        self._wal: Path | None = Path(f"{path}-wal")
        self._threshold = threshold_bytes
        self._conn: sqlite3.Connection | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_commit(self) -> None:
        """A commit happened: checkpoint soon (at most every :data:`INTERVAL`) if the WAL is
        big enough; first finish the thread's last checkpoint, if it ran since. Call it on
        the committing thread, outside a transaction."""
        if self._to_finish:
            self._to_finish = False
            self._finish()
        if self._thread is None:
            wal = self._wal
            if wal is None:
                return
            try:
                if wal.stat().st_size < self._threshold:
                    return
                self._conn = sqlite3.connect(
                    str(self._path), isolation_level=None, check_same_thread=False, timeout=30.0
                )
                self._conn.execute("PRAGMA synchronous=FULL")
            except (OSError, sqlite3.Error):
                # No background checkpoints then: the backstop one still bounds the WAL.
                self._wal = None
                return
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()
        if not self._wake.is_set():
            # Already set: the thread has not taken the last wake-up yet, and setting it
            # again (a lock and a notify per commit) changes nothing.
            self._wake.set()

    def _finish(self) -> None:
        """Copy what the thread's checkpoint left (frames committed while it ran) on the
        committing connection: then the whole WAL is in the file and the next commit starts
        it over. Only those frames are copied (at most about :data:`FINISH_FRAMES` and what
        was committed since), with one fsync of the file, at most once per :data:`INTERVAL`
        on this thread."""
        if self._committer is None:
            return
        # Busy (another process checkpointing, a reader on an old snapshot): the next one.
        with suppress(sqlite3.Error):
            self._committer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None  # set before the thread starts
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            # Busy (another process checkpointing) or an I/O error: the next commit retries,
            # and the committing connection's backstop checkpoint remains.
            with suppress(sqlite3.Error):
                self._to_finish = self._catch_up(conn)
            self._stop.wait(INTERVAL)

    def _catch_up(self, conn: sqlite3.Connection) -> bool:
        """Checkpoint, again while the last pass let more than :data:`FINISH_FRAMES` frames
        be committed behind it (at most :data:`CATCH_UP_PASSES` passes); whether it caught
        up, so the committing connection may finish it cheaply. Under a fast writer (an
        import staging pages) it does not catch up and the WAL grows until a quieter
        moment, as it did before finishing existed: a finish then would copy megabytes on
        the committing thread (30-65 ms measured, several times a 100,000-line import)."""
        seen: int | None = None
        for _ in range(CATCH_UP_PASSES):
            busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if busy:  # another connection is checkpointing: nothing to finish here
                return False
            # frames: the WAL's frames when this pass began
            if seen is not None and frames - seen <= FINISH_FRAMES:
                return True  # few committed during the last pass (or the WAL started over)
            seen = frames
        return False

    @property
    def running(self) -> bool:
        """Whether the thread has started and not stopped."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread (after a checkpoint in progress) and close its connection."""
        self._wal = None
        self._committer = None  # closed after this: nothing is finished on it any more
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._conn is not None:
            self._conn.close()
