"""connector.textsafe: the cell rule (OWASP CSV injection) and the terminal rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connector.textsafe import neutralise_cell, printable
from mock_ci_server.textsafe import neutralise_cell as simulator_neutralise


@pytest.mark.parametrize(
    "raw",
    [
        '=HYPERLINK("http://evil.example","click")',
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1)",
        "\t=1+1",
        "\r=1+1",
        "=1",
        "-",
        "+",
    ],
)
def test_formula_leading_text_gets_an_apostrophe(raw: str) -> None:
    out = neutralise_cell(raw)
    assert isinstance(out, str)
    assert out.startswith("'")
    assert out[1:] == raw  # nothing else changed (tab/CR are kept, only escaped elsewhere)


@pytest.mark.parametrize("raw", ["-5.00", "+12", "1e3", "-.5", "0123", "612004511"])
def test_numbers_written_as_text_stay_numbers(raw: str) -> None:
    assert neutralise_cell(raw) == raw


def test_real_numbers_and_none_keep_their_type() -> None:
    assert neutralise_cell(None) is None
    assert neutralise_cell(-5) == -5
    assert neutralise_cell(2.5) == 2.5
    assert neutralise_cell(Decimal("-1.10")) == Decimal("-1.10")
    assert neutralise_cell(True) == "True"  # a bool is not a number in a file


def test_plain_text_is_untouched_and_line_breaks_survive() -> None:
    assert neutralise_cell("Jane O'Brien") == "Jane O'Brien"
    assert neutralise_cell("Happy birthday,\nlove Ann") == "Happy birthday,\nlove Ann"
    assert neutralise_cell("a-b=c") == "a-b=c"  # only the first character matters


def test_control_characters_are_escaped_in_cells() -> None:
    assert neutralise_cell("Ann\x00\x07\x1b[31m\x7f\x85") == "Ann\\x00\\x07\\x1b[31m\\x7f\\x85"


def test_lone_surrogates_are_escaped_so_the_file_can_be_encoded() -> None:
    assert neutralise_cell("Flat \ud800 2") == "Flat \\ud800 2"
    assert printable("x\udfff") == "x\\udfff"
    assert simulator_neutralise("Flat \ud800\x07") == "Flat \\ud800\\x07"


def test_the_simulator_copy_applies_the_same_rule() -> None:
    for value in ("=1", "-5.00", "@a", "\tx", "plain", None, 3, "a\x1bb"):
        assert simulator_neutralise(value) == neutralise_cell(value)


def test_printable_escapes_terminal_controls() -> None:
    assert printable("\x1b[2J\x1b]0;pwned\x07") == "\\x1b[2J\\x1b]0;pwned\\x07"
    assert printable("line1\nline2\r\tx") == "line1\\nline2\\r\\tx"
    assert printable("abc\u202edcba") == "abc\\u202edcba"  # right-to-left override
    assert printable("Zoë Łukasz 山田") == "Zoë Łukasz 山田"
    assert printable(None) == ""
    assert printable(12) == "12"
    assert printable(printable("\x1b")) == "\\x1b"  # idempotent: safe to apply twice
