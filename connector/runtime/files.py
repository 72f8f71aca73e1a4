"""Files the connector writes are private to its user: created 0600, tightened when found
wider (ledgers and host databases hold customer names, addresses and phone numbers)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_MODE", "ensure_private", "write_private_text"]

PRIVATE_MODE = 0o600


def ensure_private(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 if it is missing, else drop group/other bits.

    Called before SQLite opens a database: SQLite gives its ``-wal``/``-shm``/journal files
    the mode of the database file, so they end up 0600 too. Returns whether it was created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & ~0o077)
        return False
    os.close(fd)
    return True


def write_private_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text`` (a 0600 temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
