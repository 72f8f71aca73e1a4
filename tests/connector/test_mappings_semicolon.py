"""Mapping CSVs saved by Excel with ';' (issue 13): accepted, or a clear message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connector.errors import MappingError
from connector.mappings import default_mappings_dir, load_mappings


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(default_mappings_dir(), target)
    return target


def test_semicolon_csv_is_read(folder: Path) -> None:
    (folder / "couriers.csv").write_text(
        "region;courier;service;carrier_code\nUS;Pigeon Post;;ups\n", encoding="utf-8"
    )
    table = load_mappings(folder)
    assert table.unmapped_couriers("US", ["Pigeon Post"]) == []


def test_semicolon_header_with_a_typo_says_so(folder: Path) -> None:
    (folder / "couriers.csv").write_text(
        "region;couriers;service;carrier_code\nUS;Pigeon Post;;ups\n", encoding="utf-8"
    )
    with pytest.raises(MappingError) as info:
        load_mappings(folder)
    message = str(info.value.problems[0])
    assert "separated by ';'" in message
    assert "region,courier,service,carrier_code" in message
    assert "unknown column 'region;" not in message
