"""``make hostile-files``: the file bombs of issue 9 against both readers, time and peak RSS.

``python -m benchmarks.hostile_files [--dir DIR] [--rows 1000000]`` builds the hostile files
(an XLSX declaring ``A1:XFD1048576``, one with a lone cell at ``XFD1048576`` and no dimension,
a shared-strings bomb, a 1M-row CSV with full rows and one with short rows, and a legitimate
20k-row export for comparison), then reads each in a fresh subprocess with the connector's
``read_order_export`` and the simulator's ``parse_tracking_upload`` (for files within the
upload size). It prints one line per case and, last, one JSON object with every figure.
Nothing is tuned to pass: a case that is not refused, or runs past 60 s, is printed as such.

The builders are plain functions so the regression tests can make small versions.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from connector.ops.manual_files import ORDER_EXPORT_COLUMNS

__all__ = [
    "csv_rows_file",
    "dimension_bomb",
    "far_cell_xlsx",
    "main",
    "plain_xlsx",
    "rewrite_part",
    "shared_strings_bomb",
]

# The export's header is the same on both sides (the simulator keeps its own copy of it).
_HEADER = list(ORDER_EXPORT_COLUMNS)


def _row(i: int) -> list[str]:
    values = {
        "orderid": str(1_500_000_000 + i),
        "date": "03/04/2024 09:15AM UTC",
        "ci_lineitemid": str(700_000_000 + i),
        "sku": f"SKU-{i % 500}",
        "name": "Glass food containers, 10-piece set",
        "quantity": "1",
        "unit_price": "49.99",
        "amount_total": "49.99",
        "status": "open",
        "customer_name": f"Customer {i}",
        "address1": f"{i} Example Street",
        "city": "Chicago",
        "state": "IL",
        "zip": "60601",
        "country": "US",
        "shipping_method": "Standard",
        "supplier": "EXAMPLE SUPPLIER",
    }
    return [values.get(c, "") for c in _HEADER]


def plain_xlsx(rows: int) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(_HEADER)
    for i in range(rows):
        sheet.append(_row(i))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def rewrite_part(data: bytes, member: str, change: Any) -> bytes:
    """``data`` (an XLSX) with ``member``'s bytes replaced by ``change(old)``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            body = source.read(info.filename)
            target.writestr(info.filename, change(body) if info.filename == member else body)
    return out.getvalue()


def dimension_bomb(path: Path) -> Path:
    """A ~5 KB XLSX (header + one row) whose sheet declares ``A1:XFD1048576``."""
    data = rewrite_part(
        plain_xlsx(1),
        "xl/worksheets/sheet1.xml",
        lambda xml: re.sub(
            rb'<dimension ref="[^"]*" ?/>', b'<dimension ref="A1:XFD1048576"/>', xml
        ),
    )
    path.write_bytes(data)
    return path


def far_cell_xlsx(path: Path) -> Path:
    """No dimension at all and one cell at ``XFD1048576`` (openpyxl pads up to it)."""

    def change(xml: bytes) -> bytes:
        xml = re.sub(rb'<dimension ref="[^"]*" ?/>', b"", xml)
        far = b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
        return xml.replace(b"</sheetData>", far + b"</sheetData>")

    path.write_bytes(rewrite_part(plain_xlsx(1), "xl/worksheets/sheet1.xml", change))
    return path


_SST_OVERRIDE = (
    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
)


def shared_strings_bomb(path: Path, unpacked_mb: int = 844, *, tiny: bool = False) -> Path:
    """An XLSX whose ``xl/sharedStrings.xml`` unpacks to ``unpacked_mb`` MB (packed ~1000x):
    one 1 MB string per MB, or (``tiny``) 1 MB of one-letter strings (the most objects)."""
    base = zipfile.ZipFile(io.BytesIO(plain_xlsx(1)))
    if tiny:
        chunk = b"<si><t>a</t></si>" * (1024 * 1024 // 17)
    else:
        chunk = b"<si><t>" + b"A" * (1024 * 1024 - 15) + b"</t></si>"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for info in base.infolist():
            body = base.read(info.filename)
            if info.filename == "xl/sharedStrings.xml":
                continue
            if info.filename == "[Content_Types].xml" and b"sharedStrings" not in body:
                # openpyxl finds the shared strings through this override: make it real.
                body = body.replace(b"</Types>", _SST_OVERRIDE + b"</Types>")
            target.writestr(info.filename, body)
        with target.open("xl/sharedStrings.xml", "w", force_zip64=True) as sst:
            sst.write(b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')
            for _ in range(unpacked_mb):
                sst.write(chunk)
            sst.write(b"</sst>")
    return path


def csv_rows_file(path: Path, rows: int, *, short: bool = False) -> Path:
    """A CSV export with ``rows`` data rows: full template rows, or 1-column short ones."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_HEADER)
        for i in range(rows):
            writer.writerow([str(1_500_000_000 + i)] if short else _row(i))
    return path


# --- measuring -------------------------------------------------------------------------------


def _measure_one(reader: str, path: Path) -> dict[str, Any]:
    """In THIS process: read ``path`` with ``reader`` and report outcome, seconds, peak RSS."""
    start = time.perf_counter()
    if reader == "connector":
        from connector.ops.manual_files import read_order_export

        result = read_order_export(path)
        outcome = f"{len(result.records)} records, {len(result.problems)} problems" + (
            f": {str(result.problems[0])[:160]}" if result.problems else ""
        )
    else:
        from mock_ci_server.uploads import MAX_UPLOAD_BYTES, UploadError, parse_tracking_upload

        try:
            with path.open("rb") as fh:  # what the route reads: at most the limit + 1 byte
                data = fh.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                raise UploadError(f"the file is larger than {MAX_UPLOAD_BYTES} bytes", 413)
            items, _ = parse_tracking_upload(path.name, data)
            outcome = f"{len(items)} rows accepted"
        except UploadError as exc:
            outcome = f"refused ({exc.status}): {exc.reason[:160]}"
    seconds = time.perf_counter() - start
    # VmHWM: this process's own peak (ru_maxrss can carry the parent's over fork+exec).
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    peak_kb = int(match.group(1)) if match else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak_kb / 1024
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(peak_mb, 1), "outcome": outcome}


def _run_case(reader: str, path: Path, timeout: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.hostile_files", "--one", reader, str(path)]
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"seconds": None, "peak_rss_mb": None, "outcome": f"NOT bounded: > {timeout:g} s"}
    if done.returncode != 0:
        return {"seconds": None, "peak_rss_mb": None, "outcome": f"crashed: {done.stderr[-300:]}"}
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="Where to build the files.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the big CSVs.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds per case.")
    parser.add_argument("--only", default="", help="Only cases whose name contains this.")
    parser.add_argument("--one", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_measure_one(args.one[0], Path(args.one[1]))))
        return 0
    folder = args.dir or Path(tempfile.mkdtemp(prefix="hostile-files-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"building files in {folder} ...", file=sys.stderr, flush=True)
    legit_xlsx = folder / "legit-20k.xlsx"
    legit_xlsx.write_bytes(plain_xlsx(20_000))
    files = {
        "dimension A1:XFD1048576": dimension_bomb(folder / "dimension.xlsx"),
        "far cell, no dimension": far_cell_xlsx(folder / "farcell.xlsx"),
        "shared-strings bomb": shared_strings_bomb(folder / "sst.xlsx"),
        "3.7M tiny shared strings (60 MB)": shared_strings_bomb(
            folder / "sst-tiny.xlsx", 60, tiny=True
        ),
        "0.99M tiny shared strings (16 MB)": shared_strings_bomb(
            folder / "sst-tiny-limit.xlsx", 16, tiny=True
        ),
        f"{args.rows:,}-row CSV (full rows)": csv_rows_file(folder / "rows-full.csv", args.rows),
        f"{args.rows:,}-row CSV (short rows)": csv_rows_file(
            folder / "rows-short.csv", args.rows, short=True
        ),
        "legit 20k-row CSV": csv_rows_file(folder / "legit-20k.csv", 20_000),
        "legit 20k-row XLSX": legit_xlsx,
    }
    report: dict[str, Any] = {}
    for name, path in files.items():
        if args.only not in name:
            continue
        size = path.stat().st_size
        # The simulator reads tracking files: the legitimate exports are not its input.
        readers = ("connector",) if name.startswith("legit") else ("connector", "simulator")
        for reader in readers:
            figures = _run_case(reader, path, args.timeout)
            figures["file_bytes"] = size
            report[f"{reader}: {name}"] = figures
            print(
                f"{reader:9}  {name:34} {size:>12,} B  "
                f"{figures['seconds'] if figures['seconds'] is not None else '-':>8} s  "
                f"{figures['peak_rss_mb'] if figures['peak_rss_mb'] is not None else '-':>7} MB  "
                f"{figures['outcome']}",
                flush=True,
            )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
