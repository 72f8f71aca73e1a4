"""Import benchmark: N lines from the simulator over loopback into the reference host.

The simulator runs in the calling (parent) process on a real socket (``serve_in_thread``);
the connector side runs in a child process, so its wall time and peak RSS (``ru_maxrss``) are
its own. The floor (:mod:`benchmarks.floor`) runs the same way, in a child, against an
identically seeded fresh simulator.

Each child also reports the CPU time (user + system, ``getrusage(RUSAGE_SELF)``, every thread)
of its timed part: the simulator runs in the parent, so a child's CPU is the connector and the
reference host (or the floor's plain HTTP client) only. The connector's child also reports
its system (kernel) CPU and the bytes it had written to its files (Linux ``/proc/self/io``
``write_bytes``; NaN elsewhere): the ledger's WAL, the checkpoints' copies into the files and
the host's store, the writes that the import pays for in kernel time. ``latency_ms`` injects
that delay on every CI call of both sides through the simulator's latency fault
(``POST /_sim/faults``).
"""

from __future__ import annotations

import gc
import inspect
import multiprocessing
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

__all__ = [
    "SUPPLIER_ID",
    "ChildError",
    "ImportRun",
    "SeededSim",
    "SteppedChild",
    "connector_import",
    "cpu_seconds",
    "listing_pages",
    "make_host",
    "max_rss_mb",
    "measure_import",
    "page_stats",
    "run_child",
    "running_simulator",
    "system_cpu_seconds",
    "unexported_count",
    "written_bytes",
]

SUPPLIER_ID = "77001"
SEED = 2024
# 1-3 records per order (2 on average); 20% of multi-line orders are split so that their later
# records sit >= one page after the first (the generator's split_share knob): ~13% of orders.
LINES_PER_ORDER = (1, 3)
SPLIT_SHARE = 0.2

Progress = Callable[[str], None]


class ChildError(RuntimeError):
    """A benchmark child process failed; the message says which and why."""


def _quiet(_msg: str) -> None:
    return None


def max_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ``ru_maxrss`` in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def system_cpu_seconds() -> float:
    """System (kernel) CPU seconds of this process so far (all its threads)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def written_bytes() -> float:
    """Bytes this process has caused to be written to storage (``write_bytes`` of
    ``/proc/self/io``); NaN where the kernel does not report it."""
    with suppress(OSError, ValueError), open("/proc/self/io", encoding="ascii") as io:
        for line in io:
            key, _, value = line.partition(":")
            if key == "write_bytes":
                return float(int(value))
    return float("nan")


# -- the simulator (parent side) ----------------------------------------------------------------


@dataclass
class SeededSim:
    """A seeded simulator served on loopback (``state`` is its ``SimState``)."""

    url: str
    supplier_id: str
    token: str
    lines: int
    orders: int
    seed_seconds: float
    state: Any


def _seed_exact(state: Any, supplier_id: str, lines: int, seed: int) -> int:
    """Seed multi-line orders to just under ``lines``, then single-line orders up to exactly
    ``lines``. Returns the number of orders."""
    # ~2 lines per order; 0.97 keeps the first round under the target (sd ~0.2% at 100k).
    first_orders = max(1, int(lines / 2 * 0.97)) if lines >= 100 else max(1, lines // 3)
    got = state.seed(
        supplier_id,
        orders=first_orders,
        seed=seed,
        lines_per_order=LINES_PER_ORDER,
        split_share=SPLIT_SHARE,
    )
    made_lines, made_orders = int(got["lines_created"]), int(got["orders_created"])
    if made_lines > lines:
        raise ValueError(f"seeding overshot: {made_lines} lines for a target of {lines}")
    if made_lines < lines:
        extra = state.seed(supplier_id, orders=lines - made_lines, seed=seed + 1)
        made_lines += int(extra["lines_created"])
        made_orders += int(extra["orders_created"])
    if made_lines != lines:
        raise ValueError(f"seeded {made_lines} lines, wanted {lines}")
    return made_orders


def inject_latency(url: str, latency_ms: int) -> None:
    """Delay every CI API call (``/api/*``, any method) by ``latency_ms`` through the
    simulator's control plane (docs/simulator.md, fault injection); ``/_sim/`` is never
    delayed."""
    import requests

    rules = [{"method": "*", "path": "/api/*", "latency_ms": latency_ms}] if latency_ms else []
    response = requests.post(f"{url}/_sim/faults", json=rules, timeout=30)
    if response.status_code != 200:
        raise ChildError(f"could not set the latency fault: HTTP {response.status_code}")


@contextmanager
def running_simulator(lines: int, seed: int = SEED, latency_ms: int = 0) -> Iterator[SeededSim]:
    """A fresh simulator with exactly ``lines`` lines for one account, served on 127.0.0.1:0.

    The same ``lines`` and ``seed`` give the same listing (the generator is deterministic
    and the clock is frozen before seeding). ``latency_ms`` > 0 delays every CI call.

    The seeded state is moved out of the parent's garbage collection (``gc.freeze``) while
    the server runs: a full collection scanned it all, and with two seeded simulators in the
    parent that stopped both servers' threads for 100-280 ms (measured: a 156 ms collection
    in one wave of the dispatch benchmark made one tracking call take 140 ms, a wave 5x its
    floor's), a CI outage landing on whichever side was calling, neither side's work. Objects
    made while it serves are collected as before. ``gc.unfreeze`` at the end thaws every
    frozen object, so simulators nested in one another should end together (as in
    :func:`benchmarks.bench_dispatch.measure_dispatch`)."""
    from mock_ci_server.app import create_app
    from mock_ci_server.serve import serve_in_thread
    from mock_ci_server.state import SimState

    state = SimState()
    state.clock.freeze()
    token = secrets.token_urlsafe(24)
    state.add_account(SUPPLIER_ID, token, region="US", merchant_level=5, name="Bench Housewares")
    started = time.perf_counter()
    orders = _seed_exact(state, SUPPLIER_ID, lines, seed)
    seeded = time.perf_counter() - started
    server = serve_in_thread(create_app(state))
    gc.collect()
    gc.freeze()
    try:
        if latency_ms:
            inject_latency(server.url, latency_ms)
        yield SeededSim(server.url, SUPPLIER_ID, token, lines, orders, seeded, state)
    finally:
        server.stop()
        gc.unfreeze()


def unexported_count(state: Any, supplier_id: str, token: str) -> int:
    """Lines the simulator still lists as not exported (and not cancelled): the size of its
    un-exported index, read in process without building any record."""
    return int(state.get_orders(supplier_id, token, 1).no_of_items)


def listing_pages(sim: SeededSim) -> list[list[dict[str, Any]]]:
    """Every page of the un-exported listing, read in process (untimed; for plans and stats)."""
    first = sim.state.get_orders(sim.supplier_id, sim.token, 1)
    pages = [[record for record, _ in first.records]]
    for number in range(2, first.no_of_pages + 1):
        page = sim.state.get_orders(sim.supplier_id, sim.token, number)
        pages.append([record for record, _ in page.records])
    return pages


def page_stats(pages: Sequence[Sequence[dict[str, Any]]]) -> dict[str, float]:
    """Shape of a listing: orders, lines, multi-line orders and orders split across pages."""
    page_of: dict[str, set[int]] = {}
    lines_of: dict[str, int] = {}
    for number, records in enumerate(pages):
        for record in records:
            orderid = str(record.get("orderid"))
            page_of.setdefault(orderid, set()).add(number)
            lines_of[orderid] = lines_of.get(orderid, 0) + len(record.get("line_items") or ())
    orders = len(page_of) or 1
    split = sum(1 for p in page_of.values() if len(p) > 1)
    multi = sum(1 for n in lines_of.values() if n > 1)
    return {
        "orders": len(page_of),
        "lines": sum(lines_of.values()),
        "split_orders": split,
        "split_share": split / orders,
        "multi_line_share": multi / orders,
    }


# -- children ---------------------------------------------------------------------------------


def _one_step(value: dict[str, Any]) -> Generator[dict[str, Any], Any, None]:
    yield value


def _stepped_main(
    func: Callable[..., Generator[dict[str, Any], Any, None] | dict[str, Any]],
    kwargs: dict[str, Any],
    conn: Any,
) -> None:
    """Child side of :class:`SteppedChild`: the first answer (after the set-up), then one
    answer per command until the parent sends ``None``. A ``func`` that returns a dict rather
    than a generator answers once (:func:`run_child`)."""
    try:
        made = func(**kwargs)
        steps = made if inspect.isgenerator(made) else _one_step(cast("dict[str, Any]", made))
        conn.send({"ok": True, "result": next(steps)})
        while (command := conn.recv()) is not None:
            conn.send({"ok": True, "result": steps.send(command)})
        steps.close()
    except BaseException as exc:  # report to the parent rather than die with a traceback
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    conn.close()


class SteppedChild:
    """A child process driven step by step: ``func(**kwargs)`` is a generator that yields
    once after its set-up and then once per command :meth:`send` gives it, so the parent can
    run another child between two steps of this one (the dispatch benchmark's connector and
    floor take turns).

    Children come from a ``forkserver``: a process forked or exec'd from the big parent would
    inherit the parent's peak RSS in ``ru_maxrss`` (Linux keeps it across fork and exec); a
    forkserver child starts clean, so its ``ru_maxrss`` is its own. Arguments (the token
    too) travel over a pipe, never argv, and the token never appears in an error raised here.
    """

    def __init__(
        self,
        func: Callable[..., Generator[dict[str, Any], Any, None] | dict[str, Any]],
        timeout: float = 3600,
        **kwargs: Any,
    ) -> None:
        ctx = multiprocessing.get_context("forkserver")
        self._conn, child = ctx.Pipe(duplex=True)
        self._name = func.__name__
        self._timeout = timeout
        self._token = kwargs.get("token")
        self._proc = ctx.Process(target=_stepped_main, args=(func, kwargs, child), name=self._name)
        self._proc.start()
        child.close()
        try:
            self.ready: dict[str, Any] = self._answer()
        except BaseException:
            self.close()  # a set-up that failed: the process is gone, or ends now
            raise

    def send(self, command: Any) -> dict[str, Any]:
        """Hand ``command`` to the generator and return what it yields next."""
        self._conn.send(command)
        return self._answer()

    def close(self) -> None:
        """End the generator and the process."""
        with suppress(OSError):
            self._conn.send(None)
        self._conn.close()
        self._proc.join(60)
        if self._proc.is_alive():
            self._proc.kill()

    def __enter__(self) -> SteppedChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self) -> dict[str, Any]:
        try:
            if not self._conn.poll(self._timeout):
                self._proc.kill()
                raise ChildError(f"{self._name}: no answer after {self._timeout:.0f} s")
            answer: dict[str, Any] = self._conn.recv()
        except EOFError:
            answer = {"ok": False, "error": "the child died without an answer"}
        if not answer.get("ok"):
            self._proc.join(60)  # it ends once it has reported: name its exit code
            text = str(answer.get("error"))
            if isinstance(self._token, str) and self._token:
                text = text.replace(self._token, "***")
            raise ChildError(f"{self._name} failed (exit code {self._proc.exitcode}): {text}")
        result: dict[str, Any] = answer["result"]
        return result


def run_child(
    func: Callable[..., dict[str, Any]], timeout: float = 3600, **kwargs: Any
) -> dict[str, Any]:
    """Run ``func(**kwargs)`` in a child process (a :class:`SteppedChild` of one step) and
    return the dict it returns."""
    with SteppedChild(func, timeout, **kwargs) as child:
        return child.ready


def make_host(url: str, supplier_id: str, token: str, workdir: Path) -> tuple[Any, Any]:
    """Child side: a reference host with the Groupon plugin registered, and the account
    (default :class:`~connector.models.AccountOptions`, shipped mappings)."""
    from connector.mappings import default_mappings_dir
    from connector.models import Account
    from connector.plugin import GrouponPlugin
    from connector.reference_host.facade import ChannelFacade
    from connector.reference_host.host import ReferenceHost
    from connector.reference_host.plugins import get_plugin_manager
    from connector.secrets import Secret

    account = Account(
        name="bench-us",
        channel="groupon",
        supplier_id=supplier_id,
        token=Secret(token),
        region="US",
        api_version="v4",
        base_url=url,
        data_dir=workdir / "data",
        mappings_dir=default_mappings_dir(),
    )
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(GrouponPlugin(), name="groupon")
    host = ReferenceHost(workdir / "host.sqlite3", ChannelFacade(pm))
    return host, account


def connector_import(
    url: str, supplier_id: str, token: str, workdir: Path, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Child side: one reference-host sync (import, store, mark_exported); time and memory.
    ``read_seconds``: until the first batch reached the host (the host's ``import`` progress
    step): every page read and staged, the first chunk evaluated; the rest is storing,
    binding and acknowledging. ``written_bytes`` and ``read_written_bytes``: what the child
    wrote to its files in all and until that hand-over. ``options`` override fields of the
    account's :class:`~connector.models.AccountOptions`."""
    from dataclasses import replace

    host, account = make_host(url, supplier_id, token, workdir)
    if options:
        account = replace(account, options=replace(account.options, **options))
    # When the first batch reached the host (every page read), and the bytes written by then.
    handed: list[tuple[float, float]] = []

    def step(name: str) -> None:
        if name == "import" and not handed:
            handed.append((time.perf_counter(), written_bytes()))

    try:
        cpu_before, system_before = cpu_seconds(), system_cpu_seconds()
        written_before = written_bytes()
        started = time.perf_counter()
        report = host.sync(account, progress=step)
        seconds = time.perf_counter() - started
        cpu, system = cpu_seconds() - cpu_before, system_cpu_seconds() - system_before
        written = written_bytes() - written_before
        nan = float("nan")
        return {
            "seconds": seconds,
            "read_seconds": (handed[0][0] - started) if handed else nan,
            "cpu_seconds": cpu,
            "system_cpu_seconds": system,
            "written_bytes": written,
            "read_written_bytes": (handed[0][1] - written_before) if handed else nan,
            "lines_stored": host.store.count_lines(account.name),
            "orders_stored": host.store.count_orders(account.name),
            "lines_marked_exported": report.lines_marked_exported,
            "held": report.held,
            "errors": list(report.errors),
            "duplicates": len(host.store.duplicates()),
            "peak_rss_mb": max_rss_mb(),
        }
    finally:
        host.close()


def import_floor_child(url: str, supplier_id: str, token: str) -> dict[str, Any]:
    """Child side of the import floor (see :func:`benchmarks.floor.import_floor`)."""
    import requests

    from benchmarks.floor import import_floor

    with requests.Session() as session:
        cpu_before = cpu_seconds()
        result = import_floor(session, url, supplier_id, token)
        result["cpu_seconds"] = cpu_seconds() - cpu_before
    result["peak_rss_mb"] = max_rss_mb()
    return result


# -- the measurement (parent side) --------------------------------------------------------------


@dataclass
class ImportRun:
    """One connector import and its floor, on identically seeded simulators."""

    lines: int
    orders: int
    connector_seconds: float
    floor_seconds: float
    peak_rss_mb: float
    floor_peak_rss_mb: float
    lines_stored: int
    lines_marked_exported: int
    unexported_after: int
    floor_unexported_after: int
    duplicates: int
    split_share: float
    multi_line_share: float
    floor_calls: dict[str, int]
    errors: list[str]
    connector_cpu_seconds: float = float("nan")
    floor_cpu_seconds: float = float("nan")
    latency_ms: int = 0
    connector_read_seconds: float = float("nan")
    """Until the first batch reached the host: every page read and staged."""
    floor_read_seconds: float = float("nan")
    """Until the floor's last page was decoded (its marks follow)."""
    connector_system_cpu_seconds: float = float("nan")
    """The kernel's part of :attr:`connector_cpu_seconds`."""
    connector_written_bytes: float = float("nan")
    """Bytes the connector's child wrote to its files (NaN where not reported)."""
    connector_read_written_bytes: float = float("nan")
    """The same, until the first batch reached the host."""

    @property
    def ratio(self) -> float:
        """Connector wall time / floor wall time."""
        return self.connector_seconds / self.floor_seconds

    @property
    def read_ratio(self) -> float:
        """Reading phase: connector time to its first hand-over / floor time to its last page."""
        return self.connector_read_seconds / self.floor_read_seconds

    @property
    def after_read_ratio(self) -> float:
        """The rest: the connector's storing, binding and acknowledging / the floor's marks."""
        return (self.connector_seconds - self.connector_read_seconds) / (
            self.floor_seconds - self.floor_read_seconds
        )

    @property
    def cpu_us_per_line(self) -> float:
        """Connector child CPU (connector + reference host) per line, in microseconds."""
        return self.connector_cpu_seconds / self.lines * 1e6

    @property
    def floor_cpu_us_per_line(self) -> float:
        """Floor child CPU per line, in microseconds."""
        return self.floor_cpu_seconds / self.lines * 1e6

    @property
    def cpu_over_floor_us_per_line(self) -> float:
        """(connector child CPU - floor child CPU) / lines, in microseconds."""
        return (self.connector_cpu_seconds - self.floor_cpu_seconds) / self.lines * 1e6

    @property
    def system_cpu_us_per_line(self) -> float:
        """The kernel's part of :attr:`cpu_us_per_line`."""
        return self.connector_system_cpu_seconds / self.lines * 1e6

    @property
    def written_kb_per_line(self) -> float:
        """KB (1,000 bytes) the connector's child wrote to its files per line."""
        return self.connector_written_bytes / self.lines / 1e3

    @property
    def read_written_kb_per_line(self) -> float:
        """The same, while reading every page (until the first batch reached the host)."""
        return self.connector_read_written_bytes / self.lines / 1e3

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.connector_seconds

    @property
    def complete(self) -> bool:
        """Every line stored once by the host and acknowledged in CI, without errors."""
        return (
            self.lines_stored == self.lines
            and self.lines_marked_exported == self.lines
            and self.unexported_after == 0
            and self.duplicates == 0
            and not self.errors
        )


def measure_import(
    lines: int,
    *,
    with_floor: bool = True,
    progress: Progress = _quiet,
    latency_ms: int = 0,
    options: dict[str, Any] | None = None,
) -> ImportRun:
    """Import ``lines`` lines with the connector (child), then run the floor (child) against a
    fresh, identically seeded simulator; ``latency_ms`` is injected on every CI call of both;
    ``options`` override account options on the connector side (e.g. ``ack_concurrency``)."""
    nan = float("nan")
    floor: dict[str, Any] = {"seconds": nan, "peak_rss_mb": nan, "calls": {}, "cpu_seconds": nan}
    floor_left = -1
    label = f"import {lines:,}" + (f" at {latency_ms} ms a call" if latency_ms else "")
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        progress(f"{label}: seeding the simulator")
        with running_simulator(lines, latency_ms=latency_ms) as sim:
            orders = sim.orders
            stats = page_stats(listing_pages(sim))
            progress(
                f"{label}: connector child ({orders:,} orders, "
                f"{stats['split_share']:.1%} split across pages)"
            )
            child = run_child(
                connector_import,
                url=sim.url,
                supplier_id=sim.supplier_id,
                token=sim.token,
                workdir=Path(tmp),
                options=options,
            )
            left = unexported_count(sim.state, sim.supplier_id, sim.token)
    if with_floor:
        progress(f"{label}: floor child (fresh, identically seeded simulator)")
        with running_simulator(lines, latency_ms=latency_ms) as sim:
            floor = run_child(
                import_floor_child, url=sim.url, supplier_id=sim.supplier_id, token=sim.token
            )
            floor_left = unexported_count(sim.state, sim.supplier_id, sim.token)
        if int(floor["lines"]) != lines or floor_left != 0:
            raise ChildError(f"import floor saw {floor['lines']} lines, {floor_left} left")
    return ImportRun(
        lines=lines,
        orders=orders,
        connector_seconds=float(child["seconds"]),
        floor_seconds=float(floor["seconds"]),
        peak_rss_mb=float(child["peak_rss_mb"]),
        floor_peak_rss_mb=float(floor["peak_rss_mb"]),
        lines_stored=int(child["lines_stored"]),
        lines_marked_exported=int(child["lines_marked_exported"]),
        unexported_after=left,
        floor_unexported_after=floor_left,
        duplicates=int(child["duplicates"]),
        split_share=stats["split_share"],
        multi_line_share=stats["multi_line_share"],
        floor_calls={str(k): int(v) for k, v in floor["calls"].items()},
        errors=[str(e) for e in child["errors"]],
        connector_cpu_seconds=float(child["cpu_seconds"]),
        floor_cpu_seconds=float(floor["cpu_seconds"]),
        latency_ms=latency_ms,
        connector_read_seconds=float(child["read_seconds"]),
        floor_read_seconds=float(floor.get("read_seconds", nan)),
        connector_system_cpu_seconds=float(child["system_cpu_seconds"]),
        connector_written_bytes=float(child["written_bytes"]),
        connector_read_written_bytes=float(child["read_written_bytes"]),
    )
