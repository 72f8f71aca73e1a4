"""The sync log: one JSON line per account sync, in ``<data_dir>/sync-log.jsonl`` (mode 0600).

The ledgers keep no history of syncs, and the dashboard wants the last ones with their counts
and retries, so ``ci-connector sync`` appends one entry per account here (counts only; never a
token, an address or a payload). The file is bounded: past :data:`MAX_ENTRIES` x 2 lines it is
rewritten (atomically) with the newest :data:`MAX_ENTRIES`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SYNC_LOG_NAME = "sync-log.jsonl"
MAX_ENTRIES = 500
_MODE = 0o600
# The counts an entry keeps from SyncReport.to_dict() (what the dashboard shows).
COUNT_KEYS = (
    "orders_imported",
    "lines_imported",
    "orders_new",
    "orders_refused",
    "lines_marked_exported",
    "held",
    "held_new",
    "cancellations_applied",
    "retried",
    "dispatched",
    "still_queued",
    "chunks",
)


def sync_log_path(data_dir: Path) -> Path:
    return Path(data_dir) / SYNC_LOG_NAME


def make_entry(
    account: str,
    finished_at: datetime,
    report: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One log entry: when, how long, the counts, retries per reason, errors (texts are
    expected redacted by the caller, as the CLI prints them)."""
    report = report or {}
    errors = [str(e) for e in report.get("errors", []) or []]
    if error:
        errors.append(error)
    retries = {str(k): int(v) for k, v in (report.get("transport_retries") or {}).items()}
    duration = float(report.get("duration_seconds") or 0.0)
    return {
        "account": account,
        "started_at": (finished_at - timedelta(seconds=duration)).isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_seconds": round(duration, 3),
        "ok": not errors,
        "counts": {k: int(report.get(k) or 0) for k in COUNT_KEYS},
        "transport_retries": retries,
        "errors": errors[:5],
    }


def record_run(
    data_dir: Path,
    reports: Sequence[Mapping[str, Any]],
    failures: Sequence[Mapping[str, str]] = (),
    finished_at: datetime | None = None,
) -> None:
    """Log one ``sync`` run: an entry per report (``SyncReport.to_dict()``) and per failed
    account (``{"account", "error"}``)."""
    when = finished_at or datetime.now(UTC)
    for report in reports:
        record_sync(data_dir, make_entry(str(report["account"]), when, report))
    for failure in failures:
        record_sync(data_dir, make_entry(failure["account"], when, None, failure["error"]))


def record_sync(data_dir: Path, entry: Mapping[str, Any]) -> None:
    """Append ``entry``; the file is created 0600 (and kept 0600 when trimmed).

    :raises OSError: the data directory cannot be written (the caller warns, never fails).
    """
    path = sync_log_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(dict(entry), sort_keys=False, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _MODE)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(path, _MODE)  # an older file created with another umask
    _trim(path)


def record_run_or_warn(
    data_dir: Path,
    reports: Sequence[Mapping[str, Any]],
    failures: Sequence[Mapping[str, str]],
    warn: Callable[..., None],
) -> None:
    """:func:`record_run`, but a log that cannot be written only calls ``warn(text, err=True)``
    (a sync never fails because of its log)."""
    from connector.secrets import redact

    try:
        record_run(data_dir, reports, failures)
    except OSError as exc:
        warn(f"warning: sync log not written: {redact(str(exc))}", err=True)


def _trim(path: Path) -> None:
    with path.open("rb") as handle:
        lines = handle.readlines()
    if len(lines) <= MAX_ENTRIES * 2:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sync-log.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.writelines(lines[-MAX_ENTRIES:])
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_syncs(
    data_dir: Path, limit: int = 20, account: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` entries (newest first) and how many lines could not be read."""
    path = sync_log_path(data_dir)
    if not path.exists():
        return [], 0
    entries: list[dict[str, Any]] = []
    bad = 0
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(entry, dict) or "account" not in entry:
            bad += 1
            continue
        if account is None or entry["account"] == account:
            entries.append(entry)
    return entries[::-1][:limit], bad


__all__ = [
    "MAX_ENTRIES",
    "SYNC_LOG_NAME",
    "make_entry",
    "read_syncs",
    "record_run",
    "record_run_or_warn",
    "record_sync",
    "sync_log_path",
]
