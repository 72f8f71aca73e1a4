"""Merchant-edited mapping CSVs: approved carrier codes, courier -> code, and SKU aliases.

The files live in one folder (``mappings/`` in the repository, shipped in the wheel as
``connector/default_mappings``)::

    carriers/<REGION>.csv   code,carrier_name                     Groupon's approved codes
    couriers.csv            region,courier,service,carrier_code   host courier -> Groupon code
    sku_aliases.csv         groupon_sku,host_sku,quantity         several rows = a bundle

People edit these by hand, so :func:`load_mappings` validates everything and reports *every*
problem at once (file, physical line, column, what to do) in one :class:`MappingError`;
nothing is applied from a folder with any problem. Tolerated quietly: a UTF-8 BOM, blank lines,
``#`` comment lines, whitespace around values, standard CSV quoting, and ``;`` instead of ``,``
between values (Excel's "CSV" in locales with a decimal comma) when the header says so.
"""

from __future__ import annotations

import csv
import difflib
import importlib.resources
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from connector.errors import MappingError, MappingProblem
from connector.models import SkuComponent

if TYPE_CHECKING:
    from connector.models import Account

__all__ = [
    "CARRIERS_HEADER",
    "COURIERS_HEADER",
    "DISPATCH_CHECK_SECONDS",
    "REGION_ALIASES",
    "SKU_ALIASES_HEADER",
    "CsvMappingsProvider",
    "Mappings",
    "MappingsCache",
    "MappingsProvider",
    "RegionSummary",
    "default_mappings_dir",
    "load_mappings",
    "normalize_region",
]

CARRIERS_HEADER = ("code", "carrier_name")
COURIERS_HEADER = ("region", "courier", "service", "carrier_code")
SKU_ALIASES_HEADER = ("groupon_sku", "host_sku", "quantity")

#: Region spellings accepted as another region's name (ISO says GB, Groupon says UK).
REGION_ALIASES: Mapping[str, str] = MappingProxyType({"GB": "UK"})

_REGION_RE = re.compile(r"^[A-Z]{2}$")
_BOM = b"\xef\xbb\xbf"
# Line 0 marks a problem with a whole file or folder rather than one line of it.
_WHOLE_FILE = 0


def normalize_region(region: str) -> str:
    """Upper-case ``region``, strip it, and apply :data:`REGION_ALIASES` (``GB`` -> ``UK``)."""
    key = region.strip().upper()
    return REGION_ALIASES.get(key, key)


@dataclass(frozen=True, slots=True)
class RegionSummary:
    """What ``ci-connector mappings check`` shows per region."""

    region: str
    approved_codes: int
    courier_rows: int
    carriers_file: Path


@dataclass(frozen=True)
class Mappings:
    """Validated, immutable mapping tables. Build with :func:`load_mappings` (or
    :meth:`from_tables` in tests).

    :ivar directory: the folder the tables were read from (``None`` when built in memory).
    :ivar carriers: region -> {lower-case code: code as listed}.
    :ivar carrier_names: region -> {code as listed: carrier name}.
    :ivar couriers: (region, courier lower, service lower) -> code as listed; service ``""``
        means any service.
    :ivar aliases: groupon SKU -> its host components (one for a plain alias, more for a bundle).
    :ivar carrier_files: region -> the CSV it came from.
    """

    directory: Path | None
    carriers: Mapping[str, Mapping[str, str]]
    carrier_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    couriers: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    aliases: Mapping[str, tuple[SkuComponent, ...]] = field(default_factory=dict)
    carrier_files: Mapping[str, Path] = field(default_factory=dict)

    @classmethod
    def from_tables(
        cls,
        carriers: Mapping[str, Iterable[str]],
        couriers: Iterable[tuple[str, str, str, str]] = (),
        aliases: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    ) -> Mappings:
        """Build mappings in memory without validation (for tests and embedding hosts).

        :param carriers: region -> approved codes as listed.
        :param couriers: ``(region, courier, service, code)`` rows.
        :param aliases: groupon SKU -> ``[(host_sku, quantity), ...]``.
        """
        table = {
            normalize_region(r): {c.lower(): c for c in codes} for r, codes in carriers.items()
        }
        courier_table: dict[tuple[str, str, str], str] = {}
        for region, courier, service, code in couriers:
            key = normalize_region(region)
            canonical = table.get(key, {}).get(code.lower(), code)
            courier_table[(key, _fold(courier), _fold(service))] = canonical
        alias_table = {
            sku: tuple(SkuComponent(host, qty) for host, qty in parts)
            for sku, parts in (aliases or {}).items()
        }
        return cls(None, table, {}, courier_table, alias_table, {})

    @property
    def regions(self) -> tuple[str, ...]:
        """Regions with an approved carrier list, sorted."""
        return tuple(sorted(self.carriers))

    def approved_codes(self, region: str) -> frozenset[str]:
        """Approved carrier codes of ``region`` as listed; empty for an unknown region."""
        return frozenset(self.carriers.get(normalize_region(region), {}).values())

    def is_approved(self, region: str, code: str) -> bool:
        """Whether ``code`` is on ``region``'s approved list (case-insensitive)."""
        return code.strip().lower() in self.carriers.get(normalize_region(region), {})

    def canonical_code(self, region: str, code: str) -> str | None:
        """``code`` spelled as the approved list spells it, or ``None`` if not approved."""
        return self.carriers.get(normalize_region(region), {}).get(code.strip().lower())

    def carrier_code(self, region: str, courier: str, service: str = "") -> str | None:
        """The Groupon code for a host courier (and service) in ``region``, or ``None``.

        Case-insensitive; a row for exactly ``(courier, service)`` wins over the courier's
        any-service row.
        """
        key = normalize_region(region)
        c = _fold(courier)
        s = _fold(service)
        if s:
            exact = self.couriers.get((key, c, s))
            if exact is not None:
                return exact
        return self.couriers.get((key, c, ""))

    def resolve_sku(self, sku: str, bom_sku: str | None) -> tuple[SkuComponent, ...] | None:
        """Host components for a Groupon line: ``bom_sku`` is tried first, then ``sku``;
        ``None`` when neither is mapped."""
        for candidate in (bom_sku, sku):
            if candidate:
                found = self.aliases.get(candidate.strip())
                if found is not None:
                    return found
        return None

    def unmapped_couriers(self, region: str, couriers: Iterable[str]) -> list[str]:
        """The couriers (deduplicated, first-seen order) with no any-service row in ``region``,
        i.e. those whose shipments would be held unless they carry a mapped service."""
        seen: set[str] = set()
        out: list[str] = []
        for courier in couriers:
            folded = _fold(courier)
            if folded in seen:
                continue
            seen.add(folded)
            if self.carrier_code(region, courier) is None:
                out.append(courier)
        return out

    def courier_rows(self, region: str) -> list[tuple[str, str, str]]:
        """``(courier, service, code)`` rows of ``region`` (courier/service lower-cased)."""
        key = normalize_region(region)
        return sorted((c, s, code) for (r, c, s), code in self.couriers.items() if r == key)

    def summaries(self) -> list[RegionSummary]:
        """One :class:`RegionSummary` per region, sorted by region."""
        return [
            RegionSummary(
                region=r,
                approved_codes=len(self.carriers[r]),
                courier_rows=len(self.courier_rows(r)),
                carriers_file=self.carrier_files.get(r, Path(f"carriers/{r}.csv")),
            )
            for r in self.regions
        ]

    @property
    def bundle_count(self) -> int:
        """Groupon SKUs that resolve to more than one host component."""
        return sum(1 for parts in self.aliases.values() if len(parts) > 1)


def default_mappings_dir() -> Path:
    """The mappings shipped with the package: ``connector/default_mappings`` in an installed
    wheel, else ``<repo>/mappings`` (editable install / source checkout)."""
    packaged = importlib.resources.files("connector") / "default_mappings"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "mappings"


def load_mappings(directory: Path | None = None) -> Mappings:
    """Read and validate every mapping CSV in ``directory`` (default:
    :func:`default_mappings_dir`).

    :raises MappingError: listing every problem found; nothing is returned in that case.
    """
    root = directory if directory is not None else default_mappings_dir()
    problems: list[MappingProblem] = []
    if not root.is_dir():
        raise MappingError([MappingProblem(root, _WHOLE_FILE, "", "mappings folder not found")])

    carriers, names, files = _load_carriers(root / "carriers", problems)
    # A region whose own list is broken would make every courier row using it look wrong too;
    # its file's problems are reported, so its codes are not checked against the partial list.
    broken = frozenset(r for r, f in files.items() if any(p.file == f for p in problems))
    couriers = _load_couriers(root / "couriers.csv", carriers, broken, problems)
    aliases = _load_aliases(root / "sku_aliases.csv", problems)
    if problems:
        raise MappingError(problems)
    return Mappings(
        directory=root,
        carriers=MappingProxyType({r: MappingProxyType(c) for r, c in carriers.items()}),
        carrier_names=MappingProxyType({r: MappingProxyType(n) for r, n in names.items()}),
        couriers=MappingProxyType(couriers),
        aliases=MappingProxyType(aliases),
        carrier_files=MappingProxyType(files),
    )


DISPATCH_CHECK_SECONDS = 1.0
"""How old the one-shipment dispatch hook lets the last check of the CSV files be (seconds);
see :class:`CsvMappingsProvider`."""


class MappingsCache:
    """Loads a mappings folder once and again only when one of its CSV files changed.

    The plugin consults the mappings on every import and dispatch; re-validating every file
    each time cost more than the CI call itself. The cache key is each CSV's path, size and
    modification time, so an operator's edit is seen on the next check. Checking itself
    (``rglob`` + ``stat`` of every CSV, ~0.5 ms) is skipped when the caller accepts an answer
    checked less than ``max_age`` seconds ago. A folder that fails validation is never
    cached: every call reports its problems until it is fixed. Thread-safe.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        # root -> (signature, mappings, when the signature was last checked)
        self._entries: dict[Path, tuple[tuple[tuple[str, int, int], ...], Mappings, float]] = {}

    def load(self, directory: Path | None = None, *, max_age: float = 0.0) -> Mappings:
        """:func:`load_mappings`, served from the cache while no file changed; with
        ``max_age`` > 0, served without looking at the files at all if they were checked
        less than ``max_age`` seconds ago."""
        root = directory if directory is not None else default_mappings_dir()
        if max_age > 0:
            with self._lock:
                cached = self._entries.get(root)
                if cached is not None and self._clock() - cached[2] < max_age:
                    return cached[1]
        checked = self._clock()
        signature = _folder_signature(root)
        with self._lock:
            cached = self._entries.get(root)
            if cached is not None and cached[0] == signature:
                self._entries[root] = (signature, cached[1], checked)
                return cached[1]
        mappings = load_mappings(root)  # raises on problems: nothing cached
        with self._lock:
            self._entries[root] = (signature, mappings, checked)
        return mappings


@runtime_checkable
class MappingsProvider(Protocol):
    """Where the plugin gets an account's mapping tables, once per hook call.

    The host's seam for owning its configuration: a host that keeps courier and SKU mappings
    in its own tables implements :meth:`mappings_for` (typically building
    :meth:`Mappings.from_tables` from a query) and passes the provider to
    ``GrouponPlugin(mappings_loader=...)``. The approved carrier lists are Groupon's, not the
    host's: a provider that has no copy of its own passes ``load_mappings().carriers``
    through (see ``docs/host-guide.md``). Raise :class:`~connector.errors.MappingError` for
    tables that cannot be used: the plugin then holds nothing and reports it.

    .. versionadded:: 0.2.0
    """

    def mappings_for(self, account: Account) -> Mappings: ...


class CsvMappingsProvider:
    """The default provider: the account's CSV folder (``account.mappings_dir``, else the
    mappings shipped with the package), cached by :class:`MappingsCache`.

    :meth:`mappings_for` (every import batch, ``oms_dispatch_many`` batch, flush and
    re-check) looks at the files each time, so an operator's edit is used by the next batch.
    :meth:`recent_mappings_for` (the one-shipment ``oms_dispatch``, called once per shipment
    in a loop) looks at most once every ``check_seconds`` (default
    :data:`DISPATCH_CHECK_SECONDS`; ``0`` checks every call): an edit reaches single-shipment
    dispatch within that delay.

    .. versionadded:: 0.2.0
    """

    def __init__(self, *, check_seconds: float = DISPATCH_CHECK_SECONDS) -> None:
        if check_seconds < 0:
            raise ValueError(f"check_seconds must be >= 0 (got {check_seconds!r})")
        self.check_seconds = check_seconds
        self._cache = MappingsCache()

    def mappings_for(self, account: Account) -> Mappings:
        return self._cache.load(account.mappings_dir)

    def recent_mappings_for(self, account: Account) -> Mappings:
        """The mappings, the files checked at most ``check_seconds`` ago."""
        return self._cache.load(account.mappings_dir, max_age=self.check_seconds)


def _folder_signature(root: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime_ns) of every CSV under ``root``; a new or deleted file changes it."""
    out = []
    try:
        paths = sorted(root.rglob("*.csv"))
    except OSError:
        return ()
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)


# --------------------------------------------------------------------------- reading rows


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    values: dict[str, str]


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _read_rows(
    path: Path, header: tuple[str, ...], problems: list[MappingProblem]
) -> Iterator[_Row]:
    """Yield the data rows of one CSV with values stripped; append problems as found.

    Works on physical lines so that every line number is what an editor shows.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(MappingProblem(path, _WHOLE_FILE, "", "file not found"))
        return
    except OSError as exc:
        problems.append(MappingProblem(path, _WHOLE_FILE, "", f"cannot read: {exc.strerror}"))
        return
    raw = raw.removeprefix(_BOM)
    header_seen = False
    delimiter = ","  # Excel saves ';' in locales whose decimal mark is ',': accepted too
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                MappingProblem(
                    path,
                    number,
                    "",
                    f"not valid UTF-8 (byte {chunk[exc.start]:#04x} at position "
                    f"{exc.start + 1}); save the file as UTF-8",
                )
            )
            continue
        line = line.removesuffix("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not header_seen:
            delimiter = _sniff_delimiter(line, header)
        fields = _split(path, number, line, problems, delimiter)
        if fields is None:
            continue
        if not header_seen:
            header_seen = True
            if not _check_header(path, number, fields, header, problems):
                return  # columns unknown: reading on would only produce noise
            continue
        if len(fields) == len(header) + 1 and fields[-1] == "":
            problems.append(
                MappingProblem(path, number, "", "trailing comma at the end of the line; remove it")
            )
            continue
        if len(fields) != len(header):
            problems.append(
                MappingProblem(
                    path,
                    number,
                    "",
                    f"expected {len(header)} values ({','.join(header)}), found {len(fields)}",
                )
            )
            continue
        yield _Row(number, dict(zip(header, fields, strict=True)))
    if not header_seen:
        problems.append(
            MappingProblem(
                path, _WHOLE_FILE, "", f"no header line; the first line must be {','.join(header)}"
            )
        )


def _sniff_delimiter(header_line: str, header: tuple[str, ...]) -> str:
    """``;`` when the header line is the expected header separated by semicolons (a CSV saved
    by Excel in a locale whose list separator is ';'), else ``,``."""
    if ";" not in header_line or "," in header_line:
        return ","
    names = tuple(f.strip().strip('"').lower() for f in header_line.split(";"))
    return ";" if names == header else ","


def _split(
    path: Path, number: int, line: str, problems: list[MappingProblem], delimiter: str = ","
) -> list[str] | None:
    try:
        fields = next(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        problems.append(
            MappingProblem(path, number, "", f"malformed quoting ({exc}); quote whole values only")
        )
        return None
    stripped = [f.strip() for f in fields]
    if any('"' in f for f in stripped):
        problems.append(
            MappingProblem(
                path,
                number,
                "",
                'stray quote character (") inside a value; quote whole values only, '
                "with no space before the opening quote",
            )
        )
        return None
    return stripped


def _check_header(
    path: Path,
    number: int,
    got: list[str],
    want: tuple[str, ...],
    problems: list[MappingProblem],
) -> bool:
    normal = [g.lower() for g in got]
    if tuple(normal) == want:
        return True
    exact = ",".join(want)
    if len(got) == 1 and ";" in got[0]:
        problems.append(
            MappingProblem(
                path,
                number,
                "",
                f"the header {got[0]!r} is separated by ';' but is not {';'.join(want)}; "
                f"fix the column names (';' or ',' separators both work): {exact}",
            )
        )
        return False
    before = len(problems)
    if len(normal) == len(want) + 1 and normal[-1] == "" and tuple(normal[:-1]) == want:
        problems.append(MappingProblem(path, number, "", "trailing comma after the header"))
        return False
    missing = [w for w in want if w not in normal]
    for name in normal:
        if name in want:
            if normal.count(name) > 1 and name not in {p.column for p in problems[before:]}:
                problems.append(
                    MappingProblem(path, number, name, f"column {name!r} appears twice")
                )
            continue
        close = difflib.get_close_matches(name, missing or list(want), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else f"; the header must be {exact}"
        if close and close[0] in missing:
            missing.remove(close[0])
        shown = name if name else "(empty)"
        problems.append(MappingProblem(path, number, shown, f"unknown column {shown!r}{hint}"))
    for name in missing:
        problems.append(
            MappingProblem(
                path, number, name, f"missing column {name!r}; the header must be {exact}"
            )
        )
    if len(problems) == before:
        problems.append(
            MappingProblem(path, number, "", f"columns out of order; the header must be {exact}")
        )
    return False


def _require(path: Path, row: _Row, columns: Iterable[str], problems: list[MappingProblem]) -> bool:
    ok = True
    for column in columns:
        if not row.values[column]:
            problems.append(MappingProblem(path, row.line, column, "empty value; it is required"))
            ok = False
    return ok


# --------------------------------------------------------------------------- the three tables


def _load_carriers(
    folder: Path, problems: list[MappingProblem]
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]], dict[str, Path]]:
    carriers: dict[str, dict[str, str]] = {}
    names: dict[str, dict[str, str]] = {}
    files: dict[str, Path] = {}
    if not folder.is_dir():
        problems.append(
            MappingProblem(
                folder, _WHOLE_FILE, "", "carriers folder not found (carriers/<REGION>.csv)"
            )
        )
        return carriers, names, files
    # Canonical names first, so that GB.csv (not UK.csv) is the one reported as a clash.
    paths = sorted(folder.glob("*.csv"), key=lambda p: (p.stem.upper() in REGION_ALIASES, p.name))
    for path in paths:
        region = normalize_region(path.stem)
        if not _REGION_RE.match(region):
            problems.append(
                MappingProblem(
                    path,
                    _WHOLE_FILE,
                    "",
                    f"file name must be a two-letter region code such as UK.csv, not {path.name!r}",
                )
            )
            continue
        if region in files:
            problems.append(
                MappingProblem(
                    path, _WHOLE_FILE, "", f"region {region} is already defined by {files[region]}"
                )
            )
            continue
        files[region] = path
        codes: dict[str, str] = {}
        labels: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for row in _read_rows(path, CARRIERS_HEADER, problems):
            if not _require(path, row, CARRIERS_HEADER, problems):
                continue
            code = row.values["code"]
            if any(ch.isspace() for ch in code):
                problems.append(
                    MappingProblem(path, row.line, "code", f"code {code!r} contains whitespace")
                )
                continue
            key = code.lower()
            if key in codes:
                problems.append(
                    MappingProblem(
                        path,
                        row.line,
                        "code",
                        f"duplicate code {code!r} (codes are case-insensitive; "
                        f"already on line {first_line[key]})",
                    )
                )
                continue
            codes[key] = code
            labels[code] = row.values["carrier_name"]
            first_line[key] = row.line
        if not codes and not any(p.file == path for p in problems):
            problems.append(MappingProblem(path, _WHOLE_FILE, "", "no carrier codes listed"))
        carriers[region] = codes
        names[region] = labels
    if not files and not any(p.file.parent == folder for p in problems):
        problems.append(
            MappingProblem(folder, _WHOLE_FILE, "", "no carriers/<REGION>.csv files found")
        )
    return carriers, names, files


def _load_couriers(
    path: Path,
    carriers: Mapping[str, Mapping[str, str]],
    broken: frozenset[str],
    problems: list[MappingProblem],
) -> dict[tuple[str, str, str], str]:
    table: dict[tuple[str, str, str], str] = {}
    first_line: dict[tuple[str, str, str], int] = {}
    known = ", ".join(sorted(carriers)) or "none"
    for row in _read_rows(path, COURIERS_HEADER, problems):
        if not _require(path, row, ("region", "courier", "carrier_code"), problems):
            continue
        raw_region = row.values["region"]
        region = normalize_region(raw_region)
        if region not in carriers:
            problems.append(
                MappingProblem(
                    path,
                    row.line,
                    "region",
                    f"unknown region {raw_region!r}: there is no carriers/{region}.csv "
                    f"(known regions: {known})",
                )
            )
            continue
        code = row.values["carrier_code"]
        canonical = carriers[region].get(code.lower())
        if canonical is None and region in broken:
            canonical = code
        elif canonical is None:
            close = difflib.get_close_matches(code.lower(), list(carriers[region]), n=3, cutoff=0.6)
            hint = (
                "; did you mean " + " or ".join(repr(carriers[region][c]) for c in close) + "?"
                if close
                else f"; see carriers/{region}.csv"
            )
            problems.append(
                MappingProblem(
                    path,
                    row.line,
                    "carrier_code",
                    f"{code!r} is not on the approved carrier list for {region}{hint}",
                )
            )
            continue
        key = (region, _fold(row.values["courier"]), _fold(row.values["service"]))
        if key in first_line:
            service = row.values["service"] or "(any service)"
            problems.append(
                MappingProblem(
                    path,
                    row.line,
                    "courier",
                    f"duplicate mapping for {region} / {row.values['courier']!r} / {service} "
                    f"(already on line {first_line[key]})",
                )
            )
            continue
        first_line[key] = row.line
        table[key] = canonical
    return table


def _load_aliases(
    path: Path, problems: list[MappingProblem]
) -> dict[str, tuple[SkuComponent, ...]]:
    parts: dict[str, list[SkuComponent]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for row in _read_rows(path, SKU_ALIASES_HEADER, problems):
        if not _require(path, row, SKU_ALIASES_HEADER, problems):
            continue
        groupon_sku = row.values["groupon_sku"]
        host_sku = row.values["host_sku"]
        text = row.values["quantity"]
        if not re.fullmatch(r"\+?[0-9]+", text) or int(text) < 1:
            problems.append(
                MappingProblem(
                    path,
                    row.line,
                    "quantity",
                    f"quantity must be a whole number of at least 1, not {text!r}",
                )
            )
            continue
        key = (groupon_sku, host_sku)
        if key in first_line:
            problems.append(
                MappingProblem(
                    path,
                    row.line,
                    "host_sku",
                    f"{host_sku!r} is listed twice for {groupon_sku!r} (already on line "
                    f"{first_line[key]}); put the total in one row's quantity",
                )
            )
            continue
        first_line[key] = row.line
        parts.setdefault(groupon_sku, []).append(SkuComponent(host_sku, int(text)))
    return {sku: tuple(components) for sku, components in parts.items()}
