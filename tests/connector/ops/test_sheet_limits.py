"""Bounded readers (issue 9): file bombs are refused fast, naming the file and the limit.

Small versions of the cases in ``make hostile-files``: before the fix the dimension bomb spun
for minutes, the shared-strings bomb reached 844 MB and a 1M-row CSV took 62 s / 954 MB.
"""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path

import pytest

from benchmarks.hostile_files import (
    csv_rows_file,
    dimension_bomb,
    far_cell_xlsx,
    shared_strings_bomb,
)
from connector.ops import sheet_limits as connector_copy
from connector.ops.manual_files import read_order_export
from connector.ops.sheet_limits import SheetLimits
from mock_ci_server import sheet_limits as simulator_copy
from mock_ci_server.uploads import UploadError, parse_tracking_upload


def refused(path: Path, limits: SheetLimits | None = None) -> str:
    start = time.monotonic()
    result = read_order_export(path) if limits is None else read_order_export(path, None, limits)
    elapsed = time.monotonic() - start
    assert result.records == []
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.row == 0
    assert elapsed < 20, f"took {elapsed:.1f} s"  # generous: the fixed figure is < 3 s
    text = str(problem)
    assert text.startswith(str(path))  # names the file
    return text


def test_declared_dimension_a1_xfd1048576_is_refused_before_any_row(tmp_path: Path) -> None:
    path = dimension_bomb(tmp_path / "dim.xlsx")
    assert path.stat().st_size < 10_000
    text = refused(path)
    assert "A1:XFD1048576" in text
    assert "100,000 rows" in text


def test_a_lone_far_cell_without_dimension_hits_the_row_limit(tmp_path: Path) -> None:
    text = refused(far_cell_xlsx(tmp_path / "far.xlsx"), SheetLimits(max_rows=5_000))
    assert "more than 5,000 rows" in text


def test_shared_strings_bomb_is_refused_from_the_zip_directory(tmp_path: Path) -> None:
    path = shared_strings_bomb(tmp_path / "sst.xlsx", unpacked_mb=80)
    text = refused(path)
    assert "xl/sharedStrings.xml" in text
    assert "unpacks to" in text


def test_millions_of_tiny_shared_strings_are_counted_before_openpyxl(tmp_path: Path) -> None:
    path = shared_strings_bomb(tmp_path / "tiny.xlsx", unpacked_mb=2, tiny=True)
    text = refused(path, SheetLimits(max_shared_strings=50_000))
    assert "more than 50,000 entries" in text


def test_a_zip_of_many_entries_is_refused_from_its_end_record(tmp_path: Path) -> None:
    path = tmp_path / "many.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(2_000):
            archive.writestr(f"x/{i}.xml", b"")
    text = refused(path)
    assert "holds 2,000 files; the limit is 512" in text


def test_csv_over_the_byte_limit_is_refused_unread(tmp_path: Path) -> None:
    path = csv_rows_file(tmp_path / "big.csv", 3_000)
    text = refused(path, SheetLimits(max_bytes=100_000))
    assert "the limit is 100,000 bytes" in text


def test_csv_rows_are_counted_before_any_row_is_parsed(tmp_path: Path) -> None:
    path = csv_rows_file(tmp_path / "rows.csv", 200_000, short=True)
    text = refused(path)  # default limits: 100,000 rows
    assert "more than 100,000 rows" in text
    assert "nothing was read" in text


def test_time_limit_stops_a_slow_read(tmp_path: Path) -> None:
    path = csv_rows_file(tmp_path / "ok.csv", 2_000)
    text = refused(path, SheetLimits(max_seconds=0.0))
    assert "longer than 0 s" in text


def test_a_dimension_that_is_too_small_does_not_hide_rows_or_columns(tmp_path: Path) -> None:
    from benchmarks.hostile_files import plain_xlsx, rewrite_part

    data = rewrite_part(
        plain_xlsx(3),
        "xl/worksheets/sheet1.xml",
        lambda xml: re.sub(rb'<dimension ref="[^"]*" ?/>', b'<dimension ref="A1"/>', xml),
    )
    path = tmp_path / "a1.xlsx"
    path.write_bytes(data)
    result = read_order_export(path)
    assert result.problems == []
    assert len(result.records) == 3


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_device_is_not_read_forever(fmt: str) -> None:
    result = read_order_export("/dev/zero", fmt)
    assert [str(p) for p in result.problems] == ["/dev/zero: not a regular file"]


def test_legit_export_still_reads(tmp_path: Path) -> None:
    result = read_order_export(csv_rows_file(tmp_path / "ok.csv", 300))
    assert result.problems == []
    assert len(result.records) == 300


def test_the_simulator_copy_is_the_same_module() -> None:
    assert connector_copy.__file__ is not None
    assert simulator_copy.__file__ is not None
    assert Path(connector_copy.__file__).read_text() == Path(simulator_copy.__file__).read_text()


@pytest.mark.parametrize(
    ("builder", "name", "needle"),
    [
        (dimension_bomb, "dim.xlsx", "A1:XFD1048576"),
        (lambda p: shared_strings_bomb(p, unpacked_mb=40), "sst.xlsx", "unpacks to"),
        (lambda p: shared_strings_bomb(p, 2, tiny=True), "tiny.xlsx", "more than 100,000"),
        (lambda p: csv_rows_file(p, 30_000, short=True), "rows.csv", "more than 20,000 rows"),
    ],
)
def test_simulator_upload_refuses_bombs_with_413(
    tmp_path: Path, builder: object, name: str, needle: str
) -> None:
    path = builder(tmp_path / name)  # type: ignore[operator]
    start = time.monotonic()
    with pytest.raises(UploadError) as caught:
        parse_tracking_upload(name, path.read_bytes())
    assert time.monotonic() - start < 20
    assert caught.value.status == 413
    assert name in caught.value.reason
    assert needle in caught.value.reason
