"""What the ledger costs per imported line: one reference-host sync of N lines from a seeded
simulator on loopback (the simulator serves from a thread of this process).

Measured around ``host.sync``, without a profiler:

* ledger CPU: thread CPU time spent inside the outermost :class:`~connector.ledger.Ledger`
  calls (transaction enter/exit included; a call made inside another ledger call is counted
  once, by the outer one);
* SQL statements the ledger executed (counted at its connection's ``execute``/``executemany``:
  every ``executemany`` row counts) and its commits. Not with SQLite's trace callback: Python
  hands it each statement with its values expanded into the text, a cost that grew with the
  statement and was counted as ledger CPU (~7% of it, more for multi-row inserts);
* the ledger file's size after the sync (WAL checkpointed);
* process and main-thread CPU of the whole sync (the process figure includes the simulator).

Prints one line of JSON last. ``python -m benchmarks.ledger_cost --lines 20000``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.bench_import import make_host, running_simulator
from connector.ledger import sqlite as ledger_module

__all__ = ["main", "measure"]


class _Meter:
    """Patches the Ledger class for one run; :meth:`restore` puts it back."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.statements: Counter[str] = Counter()
        self.ledgers: list[Any] = []
        self._local = threading.local()
        self._saved: dict[str, Any] = {}

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if getattr(self._local, "depth", 0):
                return fn(*args, **kwargs)
            self._local.depth = 1
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.thread_time() - started
                self._local.depth = 0

        return wrapper

    def install(self) -> None:
        cls = ledger_module.Ledger
        meter = self
        for name, fn in list(vars(cls).items()):
            if name.startswith("_") or not callable(fn) or inspect.isgeneratorfunction(fn):
                continue
            self._saved[name] = fn
            if name == "transaction":
                setattr(cls, name, self._timed_transaction(fn))
            else:
                setattr(cls, name, self._timed(name, fn))
        init = cls.__init__
        self._saved["__init__"] = init

        def counted_init(ledger: Any, *args: Any, **kwargs: Any) -> None:
            init(ledger, *args, **kwargs)
            meter.ledgers.append(ledger)
            ledger._conn = _CountingConnection(ledger._conn, meter.statements)

        setattr(cls, "__init__", counted_init)  # noqa: B010 - mypy refuses a direct assignment

    def _timed_transaction(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        meter = self

        @contextlib.contextmanager
        def transaction(ledger: Any, **kwargs: Any) -> Iterator[Any]:
            manager = fn(ledger, **kwargs)
            value = meter._timed("transaction", manager.__enter__)()
            try:
                yield value
            except BaseException as exc:
                if not meter._timed("transaction", manager.__exit__)(type(exc), exc, None):
                    raise
            else:
                meter._timed("transaction", manager.__exit__)(None, None, None)

        return transaction

    def restore(self) -> None:
        for name, fn in self._saved.items():
            setattr(ledger_module.Ledger, name, fn)


class _CountingConnection:
    """The ledger's connection, counting statements by their first three words."""

    def __init__(self, wrapped: Any, counts: Counter[str]) -> None:
        self.wrapped = wrapped
        self._counts = counts

    def _count(self, sql: str, n: int) -> None:
        self._counts[" ".join(sql.split(None, 3)[:3])] += n

    def execute(self, sql: str, params: Any = ()) -> Any:
        self._count(sql, 1)
        return self.wrapped.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = list(rows)
        self._count(sql, len(rows))
        return self.wrapped.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def measure(lines: int) -> dict[str, Any]:
    """One sync of ``lines`` lines; the figures described in the module docstring."""
    meter = _Meter()
    meter.install()
    try:
        with running_simulator(lines) as sim, tempfile.TemporaryDirectory() as tmp:
            host, account = make_host(sim.url, sim.supplier_id, sim.token, Path(tmp))
            wall0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
            report = host.sync(account)
            wall = time.perf_counter() - wall0
            cpu, thread = time.process_time() - cpu0, time.thread_time() - thread0
            ledger = meter.ledgers[0]
            ledger._conn = ledger._conn.wrapped
            ledger._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = Path(ledger.path).stat().st_size
            host.close()
    finally:
        meter.restore()
    ledger_cpu = sum(meter.spent.values())
    statements = sum(meter.statements.values())
    return {
        "lines": lines,
        "lines_marked_exported": report.lines_marked_exported,
        "ledger_cpu_s": round(ledger_cpu, 3),
        "ledger_cpu_us_per_line": round(ledger_cpu / lines * 1e6, 1),
        "ledger_cpu_by_method_s": {
            k: round(v, 3) for k, v in sorted(meter.spent.items(), key=lambda kv: -kv[1]) if v
        },
        "statements": statements,
        "statements_per_line": round(statements / lines, 2),
        "commits": meter.statements.get("COMMIT", 0),
        "ledger_file_mb": round(size / 1e6, 2),
        "sync_wall_s": round(wall, 2),
        "sync_process_cpu_s": round(cpu, 2),
        "sync_main_thread_cpu_s": round(thread, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args(argv)
    result = measure(args.lines)
    for key, value in result.items():
        if key != "ledger_cpu_by_method_s":
            print(f"{key:28} {value}")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
