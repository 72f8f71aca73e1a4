"""Tracking-number checks per Groupon carrier code.

Valid fixtures are test numbers from jkeen/tracking_number_data (the upstream of the
``tracking-numbers`` package); each "bad" twin differs from a valid one in the check digit only.
"""

from __future__ import annotations

import re

import pytest

from connector.tracking_formats import (
    TrackingCheck,
    _full_hygiene,
    _hygiene,
    check_tracking_number,
    normalize_tracking_number,
)

VALID = [
    ("ups", "1Z5R89390357567127"),
    ("ups", "1Z879E930346834440"),
    ("UPS", "1Z410E7W0392751591"),
    ("ups", "1Z8V92A70367203024"),
    ("usps", "9205590164917312751089"),
    ("usps", "9361289676090919095393"),
    ("uspsmm", "420221539101026837331000039521"),
    ("usps", "EA123456785US"),
    ("fedex", "986578788855"),
    ("fexp", "477179081230"),
    ("fedexhd", "020207021381215"),
    ("fedex", "9611020987654312345672"),
    ("fedexsp", "61299998820821171811"),
    ("fedexsp", "9205590164917312751089"),  # SmartPost hands over to USPS
    ("ont", "C11031500001879"),
    ("dhl", "3318810025"),
    ("RYM", "RB123456785GB"),
    ("rym", "RR123456785GB"),
    ("PLF", "LK123456785US"),
    ("upsmi", "9205590164917312751089"),
]

BAD_CHECK_DIGIT = [
    ("ups", "1Z5R89390357567128"),
    ("usps", "9205590164917312751088"),
    ("fedex", "986578788856"),
    ("ont", "C11031500001878"),
    ("RYM", "RB123456784GB"),
    ("usps", "EA123456786US"),
]


@pytest.mark.parametrize(("code", "number"), VALID)
def test_valid_numbers(code: str, number: str) -> None:
    result = check_tracking_number(code, number)
    assert result.known_format
    assert result.valid, result.reason
    assert result.reason.startswith("matches the ")


@pytest.mark.parametrize(("code", "number"), BAD_CHECK_DIGIT)
def test_bad_check_digit_is_invalid(code: str, number: str) -> None:
    result = check_tracking_number(code, number)
    assert result.known_format
    assert not result.valid
    assert "fails its check" in result.reason
    assert "Checksum validation failed" in result.reason


def test_spaces_and_case_are_ignored() -> None:
    assert check_tracking_number("ups", " 1z5r 8939 0357 5671 27 ").valid
    assert normalize_tracking_number(" 1z5r 8939\u00a00357 ") == "1Z5R89390357"


@pytest.mark.parametrize(
    ("code", "number", "likely"),
    [
        ("ups", "986578788855", "FedEx Express (12)"),
        ("fedex", "1Z5R89390357567127", "UPS"),
        ("usps", "1Z5R89390357567127", "UPS"),
        ("RYM", "1Z5R89390357567127", "UPS"),
        ("ont", "RB123456785GB", "S10 international postal"),
        ("ups", "C11031500001879", "OnTrac"),
    ],
)
def test_other_carriers_number_is_named(code: str, number: str, likely: str) -> None:
    result = check_tracking_number(code, number)
    assert not result.valid
    assert f"it looks like a {likely} number" in result.reason


@pytest.mark.parametrize(
    ("code", "number"), [("ups", "HELLO123"), ("fedex", "12345"), ("usps", "A1")]
)
def test_exhaustive_carriers_reject_unknown_shapes(code: str, number: str) -> None:
    result = check_tracking_number(code, number)
    assert result == TrackingCheck(True, False, result.reason)
    assert "does not match any known" in result.reason


def test_open_carriers_accept_unknown_shapes_but_not_numeric_lookalikes_as_foreign() -> None:
    # Royal Mail also issues numbers outside the S10 shape; a 10-digit number that happens to
    # pass DHL Express's check digit is not evidence of a wrong carrier.
    result = check_tracking_number("RYM", "ABC12345X")
    assert result.known_format
    assert result.valid
    assert "accepted" in result.reason
    assert check_tracking_number("ont", "3318810025").valid


def test_s10_domestic_prefix_accepted_when_check_digit_is_right() -> None:
    assert check_tracking_number("RYM", "TT123456785GB").valid
    assert not check_tracking_number("RYM", "TT123456786GB").valid


def test_unknown_carrier_is_not_checked() -> None:
    result = check_tracking_number("YDL", "JJD0002249101")
    assert result == TrackingCheck(False, True, result.reason)
    assert "'YDL'" in result.reason


@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\t\n", "empty"),
        ("1Z5R89390357567127\n", "control character (U+000A)"),
        ("1Z5R8939\x000357567127", "control character (U+0000)"),
        ("1Z5R8939\u200b0357567127", "control character (U+200B)"),
        ("9" * 41, "too long (41 characters"),
        ("1Z5R8939/0357567127", "only letters, digits"),
        ("\uff21\uff22123", "only letters, digits"),
    ],
)
@pytest.mark.parametrize("code", ["ups", "NTK", "rym"])
def test_garbage_is_always_invalid(code: str, number: str, fragment: str) -> None:
    result = check_tracking_number(code, number)
    assert not result.valid
    assert fragment in result.reason


def test_repeated_checks_are_served_from_the_cache() -> None:
    """Issue 11: every line of a shipment checked the same number against every format
    definition (~70 us each); the answer of a (carrier, number) pair is now remembered."""
    from connector.tracking_formats import _check_cached, check_tracking_number

    number = "1Z 999 AA1 01 2345 6784"
    first = check_tracking_number("ups", number)
    before = _check_cached.cache_info().hits
    again = check_tracking_number("ups", number)
    assert again == first
    assert _check_cached.cache_info().hits == before + 1
    assert first.valid
    assert not check_tracking_number("fedex", number).valid  # keyed on the carrier too


def test_own_formats_first_gives_the_full_pass_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: the carrier's own formats are tried first; every answer (valid or not, and
    its wording) is the one the pass over every definition gives."""
    import connector.tracking_formats as tf
    from benchmarks.crash_worker import ups_tracking_number

    numbers = [ups_tracking_number(i) for i in range(40)] + [
        "1Z999AA10123456784",
        "1z 999aa1 0123456784",
        "9400111899223197428490",
        "123456789012",
        "RA123456785GB",
        "C11234567890123",
        "TBA123456789000",
        "1234567890",
        "00340434161094042557",
        "AB1234",
    ]

    def answers() -> dict[tuple[str, str], object]:
        tf._check_cached.cache_clear()
        return {(c, n): tf.check_tracking_number(c, n) for c in tf._RULES for n in numbers}

    fast = answers()
    monkeypatch.setattr(tf, "_own_definitions", lambda couriers: ())
    full = answers()
    tf._check_cached.cache_clear()
    assert fast == full
    assert sum(bool(getattr(a, "valid", False)) for a in fast.values()) > 40


def test_plain_numbers_take_the_short_hygiene_path_with_the_same_answers() -> None:
    """ASCII letters and digits skip the per-character checks; the answers are those of the
    full checks (length limit included), for them and for their neighbours."""
    samples = ["1Z5R89390357567127", "1z5r89390357567127", "9" * 40, "9" * 41, "A", "", " "]
    samples += ["1Z5R 8939", "1Z5R-8939", "1Z5R\t8939", "\u00c4BC123", "\uff11\uff12", "12\n"]
    samples += ["1Z5R8939\x000357567127", "1Z5R8939\u200b0357567127", "a" * 81]
    for tracking in samples:
        assert _hygiene(tracking) == _full_hygiene(tracking), tracking
        assert normalize_tracking_number(tracking) == re.sub(r"\s+", "", tracking).upper()
