"""Every file the connector writes is private to its user (0600), whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.ops.manual_files import _write_table
from connector.runtime.files import ensure_private, write_private_text


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o000)  # the worst case: an operator's shell with umask 0
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_helpers_create_0600_even_with_umask_0(tmp_path: Path) -> None:
    assert ensure_private(tmp_path / "a.sqlite3") is True
    assert ensure_private(tmp_path / "a.sqlite3") is False
    write_private_text(tmp_path / "m.json", "{}\n")
    assert _mode(tmp_path / "a.sqlite3") == 0o600
    assert _mode(tmp_path / "m.json") == 0o600
    assert (tmp_path / "m.json").read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.usefixtures("open_umask")
def test_manual_upload_files_are_0600(tmp_path: Path) -> None:
    for fmt in ("csv", "xlsx"):
        path = tmp_path / f"upload.{fmt}"
        _write_table(path, fmt, ["a"], [["1"]])
        assert _mode(path) == 0o600, fmt
