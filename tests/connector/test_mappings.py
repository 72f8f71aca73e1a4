"""Mapping CSVs: the shipped files, lookups, and a corpus of hand-editing mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.errors import MappingError
from connector.mappings import Mappings, default_mappings_dir, load_mappings, normalize_region
from connector.models import SkuComponent

GOOD_UK = "code,carrier_name\nRYM,Royal Mail Tracked\nDPDUK,DPD UK\nYDL,Yodel\n"
GOOD_US = "code,carrier_name\nups,UPS\nusps,USPS\nfedex,FedEx\nfedexhd,FedEx Home Delivery\n"
GOOD_COURIERS = (
    "region,courier,service,carrier_code\n"
    "US,UPS,,ups\n"
    "US,FedEx,,fedex\n"
    "US,FedEx,Home Delivery,fedexhd\n"
    "UK,Royal Mail,,RYM\n"
)
GOOD_ALIASES = "groupon_sku,host_sku,quantity\nG-1,H-1,1\nB-1,H-1,2\nB-1,H-2,1\n"


def write_folder(root: Path, overrides: dict[str, bytes | str | None] | None = None) -> Path:
    """A small valid mappings folder; ``overrides`` replaces (or with None deletes) files."""
    files: dict[str, bytes | str | None] = {
        "carriers/UK.csv": GOOD_UK,
        "carriers/US.csv": GOOD_US,
        "couriers.csv": GOOD_COURIERS,
        "sku_aliases.csv": GOOD_ALIASES,
    }
    files.update(overrides or {})
    for name, content in files.items():
        if content is None:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return root


# --------------------------------------------------------------------------- shipped files


def test_shipped_mappings_load() -> None:
    m = load_mappings()
    assert m.directory == default_mappings_dir()
    assert set(m.regions) == {"US", "UK", "IT", "DE", "FR", "ES", "IE"}
    uk = m.approved_codes("UK")
    assert len(uk) == 58  # every row of the July-2018 list
    assert {"4SL", "RYM", "DPDUK", "ENVIALIA", "WHISTL", "NTK", "YDL"} <= uk
    assert m.approved_codes("US") == {
        "usps", "uspsmm", "dhlgm", "dhl", "fedex", "fexp", "fedexhd", "fedexsp",
        "ups", "upsmi", "ont", "i-parcel",
    }  # fmt: skip  # `dhl`: ShipWorks' GrouponCarrier since 2019 (issue 12)
    assert m.is_approved("IT", "glsit")
    assert not m.is_approved("UK", "GLSIT")
    assert m.approved_codes("DE") == uk


def test_shipped_courier_defaults() -> None:
    m = load_mappings()
    assert m.carrier_code("US", "USPS") == "usps"
    assert m.carrier_code("US", "FedEx", "Home Delivery") == "fedexhd"
    assert m.carrier_code("US", "FedEx", "Priority Overnight") == "fedex"
    assert m.carrier_code("US", "OnTrac") == "ont"
    assert m.carrier_code("US", "DHL eCommerce") == "dhl"  # ShipWorks since 2022 (issue 12)
    assert m.carrier_code("US", "DHL") == "dhl"
    assert m.carrier_code("UK", "Royal Mail") == "RYM"
    assert m.carrier_code("UK", "Yodel") == "YDL"
    assert m.carrier_code("IT", "GLS") == "GLSIT"
    assert m.carrier_code("IT", "BRT") == "BTI"


def test_shipped_demo_aliases() -> None:
    m = load_mappings()
    for n in range(1001, 1013):
        assert m.resolve_sku(f"DEMO-{n}", None) == (SkuComponent(f"HOST-{n}", 1),)
    assert m.resolve_sku("DEMO-BUNDLE-1", None) == (
        SkuComponent("HOST-1001", 2),
        SkuComponent("HOST-1002", 1),
    )
    assert m.resolve_sku("DEMO-9999", None) is None
    assert m.bundle_count == 1


def test_every_shipped_courier_code_is_approved() -> None:
    m = load_mappings()
    for region in m.regions:
        for _courier, _service, code in m.courier_rows(region):
            assert m.is_approved(region, code), (region, code)


# --------------------------------------------------------------------------- lookups


def test_lookups_are_case_insensitive_and_service_exact_wins(tmp_path: Path) -> None:
    m = load_mappings(write_folder(tmp_path))
    assert m.carrier_code("us", "fedex") == "fedex"
    assert m.carrier_code("US", "FEDEX", "home  delivery") == "fedexhd"
    assert m.carrier_code("US", "FedEx", "Ground") == "fedex"
    assert m.carrier_code("US", "DHL") is None
    assert m.is_approved("US", "UPS")
    assert m.is_approved("UK", "rym")
    assert not m.is_approved("US", "RYM")
    assert m.canonical_code("UK", "dpduk") == "DPDUK"


def test_gb_is_an_alias_of_uk(tmp_path: Path) -> None:
    courier_rows = GOOD_COURIERS + "GB,Yodel,,ydl\n"
    m = load_mappings(write_folder(tmp_path, {"couriers.csv": courier_rows}))
    assert normalize_region(" gb ") == "UK"
    assert m.carrier_code("GB", "Royal Mail") == "RYM"
    assert m.carrier_code("UK", "yodel") == "YDL"  # stored as listed, not as typed
    assert m.approved_codes("gb") == m.approved_codes("UK")


def test_only_service_rows_means_unmapped_without_that_service(tmp_path: Path) -> None:
    rows = GOOD_COURIERS + "UK,DPD,Next Day,DPDUK\n"
    m = load_mappings(write_folder(tmp_path, {"couriers.csv": rows}))
    assert m.carrier_code("UK", "DPD", "next day") == "DPDUK"
    assert m.carrier_code("UK", "DPD") is None
    assert m.unmapped_couriers("UK", ["Royal Mail", "DPD", "Hermes", "hermes", "ROYAL MAIL"]) == [
        "DPD",
        "Hermes",
    ]


def test_resolve_sku_prefers_bom_sku(tmp_path: Path) -> None:
    m = load_mappings(write_folder(tmp_path))
    assert m.resolve_sku("G-1", "B-1") == (SkuComponent("H-1", 2), SkuComponent("H-2", 1))
    assert m.resolve_sku("G-1", "unknown-bom") == (SkuComponent("H-1", 1),)
    assert m.resolve_sku("G-1", None) == (SkuComponent("H-1", 1),)
    assert m.resolve_sku("nope", "nope-either") is None


def test_tolerated_noise_loads(tmp_path: Path) -> None:
    couriers = (
        "\ufeff# comment first\n"
        "region, courier ,service,carrier_code\r\n"
        "\n"
        "   \n"
        "  US ,  UPS  , , UPS \r\n"
        '# "quoted" comment, with commas,,,\n'
        'us,"Fed, Ex",,fedex\n'
    )
    m = load_mappings(write_folder(tmp_path, {"couriers.csv": couriers}))
    assert m.carrier_code("US", "ups") == "ups"
    assert m.carrier_code("US", "fed, ex") == "fedex"


def test_from_tables_builds_in_memory() -> None:
    m = Mappings.from_tables({"GB": ["RYM"]}, [("UK", "Royal Mail", "", "rym")], {"G": [("H", 3)]})
    assert m.carrier_code("UK", "royal mail") == "RYM"
    assert m.resolve_sku("G", None) == (SkuComponent("H", 3),)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as info:
        load_mappings(tmp_path / "absent")
    assert f"{tmp_path / 'absent'}:0: mappings folder not found" in str(info.value)


def test_all_problems_reported_together(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path,
        {
            "couriers.csv": GOOD_COURIERS + "US,USPS,,uspz\n",
            "sku_aliases.csv": GOOD_ALIASES + "G-2,H-9,0\n",
            "carriers/UK.csv": GOOD_UK + "rym,Royal Mail again\n",
        },
    )
    with pytest.raises(MappingError) as info:
        load_mappings(folder)
    assert len(info.value.problems) == 3
    assert {p.file.name for p in info.value.problems} == {
        "couriers.csv",
        "sku_aliases.csv",
        "UK.csv",
    }


# --------------------------------------------------------------------------- hostile corpus

H_C = "region,courier,service,carrier_code\n"
H_A = "groupon_sku,host_sku,quantity\n"
H_K = "code,carrier_name\n"

# (case id, file to override, content, [(line, column, message fragment), ...])
HOSTILE: list[tuple[str, str, bytes | str | None, list[tuple[int, str, str]]]] = [
    ("couriers-missing-file", "couriers.csv", None, [(0, "", "file not found")]),
    ("aliases-missing-file", "sku_aliases.csv", None, [(0, "", "file not found")]),
    ("empty-file", "couriers.csv", "", [(0, "", "no header line")]),
    ("only-comments", "sku_aliases.csv", "# nothing\n\n", [(0, "", "no header line")]),
    (
        "misspelt-header",
        "sku_aliases.csv",
        "groupon_sku,host_sku,qty\nG,H,1\n",
        [(1, "qty", "did you mean 'quantity'?")],
    ),
    (
        "missing-header-column",
        "couriers.csv",
        "region,courier,carrier_code\nUS,UPS,ups\n",
        [(1, "service", "missing column 'service'")],
    ),
    (
        "extra-header-column",
        "carriers/US.csv",
        "code,carrier_name,notes\nups,UPS,x\n",
        [(1, "notes", "unknown column 'notes'")],
    ),
    (
        "header-out-of-order",
        "sku_aliases.csv",
        "host_sku,groupon_sku,quantity\n",
        [(1, "", "columns out of order")],
    ),
    (
        "header-after-comment-misspelt",
        "couriers.csv",
        "# mine\n\nregoin,courier,service,carrier_code\n",
        [(3, "regoin", "did you mean 'region'?")],
    ),
    (
        "header-duplicate-column",
        "carriers/UK.csv",
        "code,code\nRYM,RYM\n",
        [(1, "code", "appears twice"), (1, "carrier_name", "missing column")],
    ),
    ("header-trailing-comma", "sku_aliases.csv", H_A.strip() + ",\n", [(1, "", "trailing comma")]),
    (
        "too-few-values",
        "couriers.csv",
        H_C + "US,UPS,ups\n",
        [(2, "", "expected 4 values (region,courier,service,carrier_code), found 3")],
    ),
    ("too-many-values", "sku_aliases.csv", H_A + "G,H,1,2,3\n", [(2, "", "found 5")]),
    ("trailing-delimiter", "couriers.csv", H_C + "\nUS,UPS,,ups,\n", [(3, "", "trailing comma")]),
    ("empty-code", "carriers/US.csv", H_K + "ups,UPS\n ,Nobody\n", [(3, "code", "empty value")]),
    ("empty-courier", "couriers.csv", H_C + "US,,,ups\n", [(2, "courier", "empty value")]),
    (
        "code-not-approved-with-suggestion",
        "couriers.csv",
        H_C + "US,UPS,,ups\nUK,Royal Mail,,RYMM\n",
        [
            (
                3,
                "carrier_code",
                "'RYMM' is not on the approved carrier list for UK; did you mean 'RYM'",
            )
        ],
    ),
    (
        "code-from-other-region",
        "couriers.csv",
        H_C + "US,Royal Mail,,RYM\n",
        [(2, "carrier_code", "not on the approved carrier list for US")],
    ),
    (
        "duplicate-code-case-insensitive",
        "carriers/UK.csv",
        H_K + "RYM,Royal Mail\n#\nDPDUK,DPD\nrym,Royal Mail lower\n",
        [(5, "code", "duplicate code 'rym' (codes are case-insensitive; already on line 2)")],
    ),
    (
        "duplicate-courier-service",
        "couriers.csv",
        H_C + "US,UPS,,ups\nus,ups, ,UPS\n",
        [(3, "courier", "already on line 2")],
    ),
    (
        "duplicate-bundle-component",
        "sku_aliases.csv",
        H_A + "B,H-1,1\nB,H-2,1\nB,H-1,3\n",
        [(4, "host_sku", "'H-1' is listed twice for 'B' (already on line 2)")],
    ),
    ("quantity-zero", "sku_aliases.csv", H_A + "G,H,0\n", [(2, "quantity", "not '0'")]),
    ("quantity-negative", "sku_aliases.csv", H_A + "G,H,-2\n", [(2, "quantity", "not '-2'")]),
    ("quantity-decimal", "sku_aliases.csv", H_A + "G,H,1.5\n", [(2, "quantity", "not '1.5'")]),
    ("quantity-text", "sku_aliases.csv", H_A + "G,H,two\n", [(2, "quantity", "not 'two'")]),
    (
        "unknown-region",
        "couriers.csv",
        H_C + "US,UPS,,ups\nXX,UPS,,ups\n",
        [(3, "region", "unknown region 'XX': there is no carriers/XX.csv (known regions: UK, US)")],
    ),
    (
        "non-utf8-line",
        "sku_aliases.csv",
        H_A.encode() + b"G,H,1\nG2,Caf\xe9,1\n",
        [(3, "", "not valid UTF-8 (byte 0xe9 at position 7)")],
    ),
    (
        "unterminated-quote",
        "couriers.csv",
        H_C + 'US,"UPS,,ups\n',
        [(2, "", "malformed quoting")],
    ),
    (
        "stray-quote",
        "couriers.csv",
        H_C + 'US,Royal "Mail",,ups\n',
        [(2, "", "stray quote character")],
    ),
    (
        "bad-region-file-name",
        "carriers/United Kingdom.csv",
        H_K + "RYM,Royal Mail\n",
        [(0, "", "two-letter region code")],
    ),
    (
        "gb-and-uk-both",
        "carriers/GB.csv",
        H_K + "RYM,Royal Mail\n",
        [(0, "", "region UK is already defined by")],  # reported on GB.csv, the alias
    ),
    ("carrier-file-no-rows", "carriers/US.csv", H_K, [(0, "", "no carrier codes listed")]),
    (
        "code-with-space",
        "carriers/US.csv",
        H_K + "u ps,UPS\n",
        [(2, "code", "contains whitespace")],
    ),
    (
        "bom-and-crlf-still-located",
        "sku_aliases.csv",
        b"\xef\xbb\xbf" + H_A.encode() + b"G,H,1\r\nG,H,1\r\n",
        [(3, "host_sku", "listed twice")],
    ),
]


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [pytest.param(f, c, e, id=i) for i, f, c, e in HOSTILE],
)
def test_hostile_input_is_located_exactly(
    tmp_path: Path,
    filename: str,
    content: bytes | str | None,
    expected: list[tuple[int, str, str]],
) -> None:
    folder = write_folder(tmp_path, {filename: content})
    with pytest.raises(MappingError) as info:
        load_mappings(folder)
    problems = info.value.problems
    got = [(p.file, p.line, p.column) for p in problems]
    assert got == [(folder / filename, line, col) for line, col, _ in expected], str(info.value)
    message = str(info.value)
    for problem, (line, column, fragment) in zip(problems, expected, strict=True):
        assert fragment in problem.message, problem
        where = f"{folder / filename}:{line}" + (f" column {column!r}" if column else "")
        assert f"{where}: " in message


def test_hostile_corpus_is_big_enough() -> None:
    assert len(HOSTILE) >= 25


def test_default_dir_prefers_the_packaged_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.resources

    import connector.mappings as module

    assert default_mappings_dir() == Path(module.__file__).resolve().parent.parent / "mappings"
    (tmp_path / "default_mappings").mkdir()
    monkeypatch.setattr(importlib.resources, "files", lambda _pkg: tmp_path)
    assert default_mappings_dir() == tmp_path / "default_mappings"


def test_cache_serves_unchanged_folder_and_reloads_after_an_edit(tmp_path: Path) -> None:
    import shutil

    from connector.errors import MappingError
    from connector.mappings import MappingsCache, default_mappings_dir

    folder = tmp_path / "m"
    shutil.copytree(default_mappings_dir(), folder)
    cache = MappingsCache()
    first = cache.load(folder)
    assert cache.load(folder) is first  # nothing changed: no re-read
    assert first.resolve_sku("NEW-SKU", None) is None

    with (folder / "sku_aliases.csv").open("a", encoding="utf-8") as fh:
        fh.write("NEW-SKU,HOST-NEW,1\n")
    second = cache.load(folder)
    assert second is not first
    assert second.resolve_sku("NEW-SKU", None) is not None

    with (folder / "couriers.csv").open("a", encoding="utf-8") as fh:
        fh.write("US,Pigeon,,not-a-code\n")
    for _ in range(2):  # a broken folder is reported on every call, never cached
        with pytest.raises(MappingError, match="not-a-code"):
            cache.load(folder)
    lines = (folder / "couriers.csv").read_text(encoding="utf-8").splitlines()[:-1]
    (folder / "couriers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert cache.load(folder).resolve_sku("NEW-SKU", None) is not None


def test_cache_checks_the_files_at_most_once_per_max_age(tmp_path: Path) -> None:
    """Issue 11: the one-shipment dispatch hook re-scanned every CSV (rglob + stat, ~0.5 ms)
    on every call. With ``max_age`` the files are looked at once per window; an operator's
    edit is used once the window has passed, and a call without ``max_age`` always looks."""
    import shutil

    from connector.mappings import MappingsCache, default_mappings_dir

    folder = tmp_path / "m"
    shutil.copytree(default_mappings_dir(), folder)
    now = [100.0]
    cache = MappingsCache(clock=lambda: now[0])
    first = cache.load(folder, max_age=2.0)
    with (folder / "sku_aliases.csv").open("a", encoding="utf-8") as fh:
        fh.write("NEW-SKU,HOST-NEW,1\n")
    now[0] += 1.5
    assert cache.load(folder, max_age=2.0) is first  # inside the window: files not looked at
    now[0] += 0.6  # 2.1 s after the last check
    fresh = cache.load(folder, max_age=2.0)
    assert fresh is not first
    assert fresh.resolve_sku("NEW-SKU", None) is not None
    # A batch (no max_age) always looks: an edit is used at once.
    with (folder / "sku_aliases.csv").open("a", encoding="utf-8") as fh:
        fh.write("NEWER-SKU,HOST-NEW,1\n")
    assert cache.load(folder).resolve_sku("NEWER-SKU", None) is not None


def test_csv_provider_recent_mappings_follow_check_seconds(tmp_path: Path) -> None:
    import shutil

    from connector.mappings import CsvMappingsProvider, MappingsCache, default_mappings_dir
    from connector.models import Account
    from connector.secrets import Secret

    folder = tmp_path / "m"
    shutil.copytree(default_mappings_dir(), folder)
    account = Account(
        name="us",
        channel="groupon",
        supplier_id="1",
        token=Secret("t"),
        region="US",
        api_version="v4",
        base_url="http://127.0.0.1:9",
        data_dir=tmp_path,
        mappings_dir=folder,
    )
    now = [0.0]
    provider = CsvMappingsProvider(check_seconds=3.0)
    provider._cache = MappingsCache(clock=lambda: now[0])
    before = provider.recent_mappings_for(account)
    with (folder / "sku_aliases.csv").open("a", encoding="utf-8") as fh:
        fh.write("NEW-SKU,HOST-NEW,1\n")
    now[0] = 2.9
    assert provider.recent_mappings_for(account) is before
    assert provider.mappings_for(account).resolve_sku("NEW-SKU", None) is not None  # a batch
    with (folder / "sku_aliases.csv").open("a", encoding="utf-8") as fh:
        fh.write("NEWER-SKU,HOST-NEW,1\n")
    now[0] = 6.0  # 3.1 s after mappings_for looked
    assert provider.recent_mappings_for(account).resolve_sku("NEWER-SKU", None) is not None
    always = CsvMappingsProvider(check_seconds=0)
    with (folder / "sku_aliases.csv").open("a", encoding="utf-8") as fh:
        fh.write("LAST-SKU,HOST-NEW,1\n")
    assert always.recent_mappings_for(account).resolve_sku("LAST-SKU", None) is not None
    with pytest.raises(ValueError, match="check_seconds"):
        CsvMappingsProvider(check_seconds=-1)
