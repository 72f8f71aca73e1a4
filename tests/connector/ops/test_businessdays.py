from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError
from connector.models import Account, AccountOptions
from connector.ops.businessdays import (
    BusinessCalendar,
    calendar_for_account,
    parse_closures,
    parse_cutoff,
    parse_timezone,
)
from connector.secrets import Secret

CT = ZoneInfo("America/Chicago")
FIVE_PM = time(17, 0)
US = BusinessCalendar("US")

dates = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))
small_n = st.integers(min_value=0, max_value=40)


def ct(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CT).astimezone(UTC)


# --- basic calendar -------------------------------------------------------------------


def test_weekends_holidays_and_closures_are_not_business_days() -> None:
    cal = BusinessCalendar("US", closures=[date(2026, 12, 24)])
    assert cal.is_business_day(date(2026, 11, 25))  # Wednesday
    assert not cal.is_business_day(date(2026, 11, 26))  # Thanksgiving
    assert not cal.is_business_day(date(2026, 11, 28))  # Saturday
    assert not cal.is_business_day(date(2026, 7, 3))  # Independence Day observed (Fri)
    assert not cal.is_business_day(date(2026, 12, 24))  # configured closure
    assert US.is_business_day(date(2026, 12, 24))
    assert cal.holiday_name(date(2026, 11, 26)) == "Thanksgiving Day"
    assert cal.holiday_name(date(2026, 12, 24)) == "closure"


def test_uk_is_an_alias_for_gb_and_subdivisions_work() -> None:
    uk = BusinessCalendar("uk")
    assert uk.region == "GB"
    assert not uk.is_business_day(date(2026, 12, 28))  # Boxing Day observed
    assert uk.is_business_day(date(2026, 4, 6))  # Easter Monday is not UK-wide
    eng = BusinessCalendar("GB-ENG")
    assert not eng.is_business_day(date(2026, 4, 6))


def test_custom_weekend() -> None:
    cal = BusinessCalendar("US", weekend=(4, 5))  # Friday + Saturday
    assert not cal.is_business_day(date(2026, 3, 6))  # Friday
    assert cal.is_business_day(date(2026, 3, 8))  # Sunday


def test_bad_region_and_weekend_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="'XX'"):
        BusinessCalendar("XX")
    with pytest.raises(ConfigError, match="no business day"):
        BusinessCalendar("US", weekend=range(7))
    with pytest.raises(ConfigError, match="0-6"):
        BusinessCalendar("US", weekend=(7,))


def test_add_business_days_examples() -> None:
    assert US.add_business_days(date(2026, 11, 25), 1) == date(2026, 11, 27)
    assert US.add_business_days(date(2026, 11, 28), 0) == date(2026, 11, 30)
    assert US.add_business_days(date(2026, 11, 28), 1) == date(2026, 11, 30)
    assert US.add_business_days(date(2026, 11, 30), 0) == date(2026, 11, 30)
    with pytest.raises(ValueError, match="-1"):
        US.add_business_days(date(2026, 11, 30), -1)


def test_business_days_between_is_half_open() -> None:
    # (Wed 25 Nov, Mon 30 Nov] = Fri 27 + Mon 30 (Thanksgiving and the weekend skipped)
    assert US.business_days_between(date(2026, 11, 25), date(2026, 11, 30)) == 2
    assert US.business_days_between(date(2026, 11, 30), date(2026, 11, 30)) == 0
    assert US.business_days_between(date(2026, 11, 30), date(2026, 11, 1)) == 0


# --- deadlines ------------------------------------------------------------------------


def test_deadline_before_cutoff_is_next_business_day() -> None:
    # Monday 16:00 CT -> Tuesday 17:00 CT
    assert US.deadline_after(ct(2026, 3, 2, 16), 1, FIVE_PM, CT) == ct(2026, 3, 3, 17)


def test_deadline_at_or_after_cutoff_counts_from_next_business_day() -> None:
    assert US.deadline_after(ct(2026, 3, 2, 17), 1, FIVE_PM, CT) == ct(2026, 3, 4, 17)
    assert US.deadline_after(ct(2026, 3, 2, 18), 1, FIVE_PM, CT) == ct(2026, 3, 4, 17)


def test_deadline_friday_evening_before_monday_holiday() -> None:
    # Fri 4 Sep 2026 18:00 CT, Labor Day Mon 7 Sep -> starts Tue 8 -> due Wed 9 Sep 17:00 CT
    assert US.deadline_after(ct(2026, 9, 4, 18), 1, FIVE_PM, CT) == ct(2026, 9, 9, 17)


def test_deadline_day_before_thanksgiving() -> None:
    # Wed 25 Nov 2026 10:00 CT, Thanksgiving Thu 26 -> due Fri 27 Nov 17:00 CT
    assert US.deadline_after(ct(2026, 11, 25, 10), 1, FIVE_PM, CT) == ct(2026, 11, 27, 17)
    # after the cut-off it starts Fri 27 and is due Mon 30 Nov
    assert US.deadline_after(ct(2026, 11, 25, 19), 1, FIVE_PM, CT) == ct(2026, 11, 30, 17)


def test_deadline_order_on_weekend_and_utc_day_boundary() -> None:
    # Sunday 22:00 CT is Monday 04:00 UTC; still a Sunday order locally -> starts Mon -> Tue
    order = ct(2026, 3, 8, 22)
    assert order.date() == date(2026, 3, 9)
    assert US.deadline_after(order, 1, FIVE_PM, CT) == ct(2026, 3, 10, 17)


def test_deadline_uses_configured_closures() -> None:
    cal = BusinessCalendar("US", closures=[date(2026, 3, 3)])
    assert cal.deadline_after(ct(2026, 3, 2, 9), 1, FIVE_PM, CT) == ct(2026, 3, 4, 17)


def test_deadline_returns_utc_across_dst_change() -> None:
    # DST starts Sun 8 Mar 2026: 17:00 CT is 23:00 UTC before, 22:00 UTC after
    due = US.deadline_after(ct(2026, 3, 6, 9), 1, FIVE_PM, CT)
    assert due.tzinfo is UTC
    assert due == datetime(2026, 3, 9, 22, 0, tzinfo=UTC)


def test_deadline_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        US.deadline_after(datetime(2026, 3, 2, 9), 1, FIVE_PM, CT)


# --- config helpers -------------------------------------------------------------------


def test_parse_helpers_name_the_bad_value() -> None:
    assert parse_cutoff("17:30") == time(17, 30)
    with pytest.raises(ConfigError, match="'5pm'"):
        parse_cutoff("5pm")
    with pytest.raises(ConfigError, match="'Mars/Base'"):
        parse_timezone("Mars/Base")
    assert parse_closures(["2026-12-24"]) == {date(2026, 12, 24)}
    with pytest.raises(ConfigError, match="'24/12/2026'"):
        parse_closures(["24/12/2026"])


def test_calendar_for_account_reads_options() -> None:
    opts = AccountOptions(cutoff="16:00", timezone="Europe/London", closures=("2026-12-24",))
    acct = Account("uk1", "groupon", "S1", Secret("t0ken-value"), region="UK", options=opts)
    cal, cutoff, tz = calendar_for_account(acct)
    assert cal.region == "GB"
    assert not cal.is_business_day(date(2026, 12, 24))
    assert cutoff == time(16, 0)
    assert tz == ZoneInfo("Europe/London")
    bad = Account("bad", "groupon", "S1", Secret("t0ken-value"), region="ZZ")
    with pytest.raises(ConfigError, match="account 'bad'"):
        calendar_for_account(bad)


# --- properties -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(dates, small_n, small_n)
def test_monotonic_in_n(d: date, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert US.add_business_days(d, lo) <= US.add_business_days(d, hi)


@settings(max_examples=200, deadline=None)
@given(dates, st.integers(0, 30), small_n)
def test_monotonic_in_start(d: date, gap: int, n: int) -> None:
    assert US.add_business_days(d, n) <= US.add_business_days(d + timedelta(days=gap), n)


@settings(max_examples=200, deadline=None)
@given(dates, small_n)
def test_result_is_a_business_day_and_skips_non_business_days(d: date, n: int) -> None:
    result = US.add_business_days(d, n)
    assert US.is_business_day(result)
    assert result.weekday() < 5
    assert result not in US._holidays
    # no business day is skipped: between d and result there are exactly n (or n+1 for n=0
    # on a non-business day, where rolling forward lands on the first one)
    expected = n if (n > 0 or US.is_business_day(d)) else 1
    assert US.business_days_between(d, result) == expected


@settings(max_examples=200, deadline=None)
@given(dates)
def test_zero_on_business_day_is_identity(d: date) -> None:
    b = US.roll_forward(d)
    assert US.add_business_days(b, 0) == b
    assert US.add_business_days(d, 0) == b


@settings(max_examples=200, deadline=None)
@given(dates, small_n, small_n)
def test_addition_composes_on_business_days(d: date, a: int, b: int) -> None:
    start = US.roll_forward(d)
    assert US.add_business_days(US.add_business_days(start, a), b) == US.add_business_days(
        start, a + b
    )


@settings(max_examples=200, deadline=None)
@given(dates, small_n)
def test_between_inverts_add(d: date, n: int) -> None:
    start = US.roll_forward(d)
    assert US.business_days_between(start, US.add_business_days(start, n)) == n


@settings(max_examples=100, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
    st.integers(0, 10),
)
def test_deadline_is_cutoff_on_a_business_day_after_the_order(order: datetime, n: int) -> None:
    due = US.deadline_after(order, n, FIVE_PM, CT)
    local = due.astimezone(CT)
    assert local.time() == FIVE_PM
    assert US.is_business_day(local.date())
    assert due > order
    assert due <= US.deadline_after(order, n + 1, FIVE_PM, CT)
