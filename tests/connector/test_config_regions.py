"""Sub-national holiday regions and disabled accounts in the configuration (issue 13)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from connector.config import load_config
from connector.errors import ConfigError
from connector.ops.businessdays import calendar_for_account

ENV = {"T": "token-value-0001", "U": "token-value-0002"}


def config(tmp_path: Path, region: str, options: str = "", extra: str = "") -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(
        f'[[accounts]]\nname = "a"\nsupplier_id = "1"\nregion = "{region}"\ntoken_env = "T"\n'
        f"{extra}[accounts.options]\n{options}",
        encoding="utf-8",
    )
    return path


EASTER_MONDAY_2026 = date(2026, 4, 6)
ST_ANDREWS_2026 = date(2026, 11, 30)  # Scotland only


@pytest.mark.parametrize(
    ("region", "easter_monday_closed", "st_andrews_closed"),
    [("GB-ENG", True, False), ("GB-SCT", False, True), ("UK", False, False)],
)
def test_gb_subdivisions_select_their_holidays(
    tmp_path: Path, region: str, easter_monday_closed: bool, st_andrews_closed: bool
) -> None:
    account = load_config(config(tmp_path, region), ENV).account("a")
    assert account.region == "UK"  # the carrier list stays the UK's
    calendar, _, _ = calendar_for_account(account)
    assert calendar.is_business_day(EASTER_MONDAY_2026) is not easter_monday_closed
    assert calendar.is_business_day(ST_ANDREWS_2026) is not st_andrews_closed


def test_easter_monday_moves_a_gb_eng_deadline(tmp_path: Path) -> None:
    eng = load_config(config(tmp_path, "GB-ENG"), ENV).account("a")
    cal, cutoff, tz = calendar_for_account(eng)
    # Thursday before Easter 2026, 10:00 UTC: Good Friday and Easter Monday are holidays.
    due = cal.deadline_after(datetime(2026, 4, 2, 10, tzinfo=UTC), 1, cutoff, tz)
    assert due.astimezone(tz).date() == date(2026, 4, 7)


def test_us_state_as_region_or_option(tmp_path: Path) -> None:
    cesar_chavez_2026 = date(2026, 3, 31)  # a California state holiday
    by_region = load_config(config(tmp_path, "US-CA"), ENV).account("a")
    assert (by_region.region, by_region.options.holiday_region) == ("US", "US-CA")
    assert not calendar_for_account(by_region)[0].is_business_day(cesar_chavez_2026)
    by_option = load_config(config(tmp_path, "US", 'holiday_region = "US-CA"\n'), ENV)
    assert by_option.account("a").options.holiday_region == "US-CA"
    plain = load_config(config(tmp_path, "US"), ENV).account("a")
    assert calendar_for_account(plain)[0].is_business_day(cesar_chavez_2026)


def test_unknown_subdivision_is_refused_with_examples(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config(tmp_path, "GB-XYZ"), ENV)
    assert "key 'region'" in str(info.value)
    assert "GB-ENG" in str(info.value)


def test_disabled_account_needs_no_token_and_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "connector.toml"
    path.write_text(
        '[[accounts]]\nname = "a"\nsupplier_id = "1"\ntoken_env = "T"\n'
        '[[accounts]]\nname = "b"\nenabled = false\nsupplier_id = "2"\ntoken_env = "NOPE"\n',
        encoding="utf-8",
    )
    cfg = load_config(path, ENV)
    assert [a.name for a in cfg.accounts] == ["a"]
    assert cfg.disabled == ("b",)
    assert "b" not in cfg.missing_tokens
    with pytest.raises(ConfigError, match="disabled"):
        cfg.account("b")


def test_enabled_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'enabled': must be true or false"):
        load_config(config(tmp_path, "US", extra='enabled = "no"\n'), ENV)
