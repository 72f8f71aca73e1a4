"""Clock, carriers, business days and generator helpers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from mock_ci_server.businessdays import add_business_days, country_for_region, is_business_day
from mock_ci_server.carriers import UnknownRegionError, default_codes, normalise
from mock_ci_server.clock import SimClock
from mock_ci_server.generator import Knobs, format_ci_datetime, money


def test_clock_set_advance_freeze_resume() -> None:
    clock = SimClock()
    real = datetime.now(UTC)
    assert abs((clock.now() - real).total_seconds()) < 5
    assert not clock.frozen
    at = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    assert clock.set(at) == at
    assert clock.now() == at
    assert clock.advance(timedelta(hours=2)) == at + timedelta(hours=2)
    clock.resume()
    assert not clock.frozen
    assert clock.now() >= at + timedelta(hours=2)
    frozen = clock.freeze()
    assert clock.now() == frozen
    with pytest.raises(ValueError, match="no time zone"):
        clock.set(datetime(2024, 1, 1))


def test_carrier_lists() -> None:
    assert len(default_codes("UK")) == 58
    assert default_codes("GB") == default_codes("uk")
    assert "glsit" in default_codes("IT")
    assert "glsit" not in default_codes("FR")
    assert "i-parcel" in default_codes("US")
    assert "rym" in normalise(default_codes("UK"))
    with pytest.raises(UnknownRegionError, match="unknown region 'XX'"):
        default_codes("XX")


def test_business_days() -> None:
    assert country_for_region("UK") == "GB"
    assert not is_business_day(date(2024, 7, 4), "US")  # Independence Day
    assert is_business_day(date(2024, 7, 4), "UK")
    assert not is_business_day(date(2024, 3, 29), "UK")  # Good Friday
    # Fri 28 June 2024 + 4 business days in the US: 1, 2, 3, (4 July off), 5 July.
    assert add_business_days(date(2024, 6, 28), 4, "US") == date(2024, 7, 5)
    assert add_business_days(date(2024, 6, 28), 4, "UK") == date(2024, 7, 4)
    assert add_business_days(date(2024, 6, 28), 0, "US") == date(2024, 6, 28)
    with pytest.raises(ValueError, match=">= 0"):
        add_business_days(date(2024, 6, 28), -1, "US")


def test_money_and_dates() -> None:
    assert money(7500) == 75
    assert isinstance(money(7500), int)
    assert money(4999) == 49.99
    assert money(2450) == 24.5
    assert format_ci_datetime(datetime(2024, 3, 4, 21, 5, tzinfo=UTC)) == "03/04/2024 09:05PM UTC"


def test_knobs_validation_names_fields() -> None:
    with pytest.raises(ValueError, match="quantity"):
        Knobs(quantity=(0, 1))
    with pytest.raises(ValueError, match="split_share"):
        Knobs(split_share=2)
    with pytest.raises(ValueError, match="countries"):
        Knobs(countries=())
