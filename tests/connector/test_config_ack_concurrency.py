"""``ack_concurrency`` (issue 11 point 3): default 3, 1..16, a clear error naming file, account
and key otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import load_config
from connector.errors import ConfigError
from tests.connector.test_config import ENV, MINIMAL, write


def test_default_is_three(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), ENV)
    assert cfg.account("us").options.ack_concurrency == 3


@pytest.mark.parametrize("value", [1, 16])
def test_bounds_are_accepted(tmp_path: Path, value: int) -> None:
    text = MINIMAL + f"[accounts.options]\nack_concurrency = {value}\n"
    assert load_config(write(tmp_path, text), ENV).account("us").options.ack_concurrency == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0", "key 'ack_concurrency': must be 1..16, not 0"),
        ("17", "key 'ack_concurrency': must be 1..16, not 17"),
        ('"3"', "key 'ack_concurrency'"),
    ],
)
def test_out_of_range_is_a_clear_error(tmp_path: Path, value: str, fragment: str) -> None:
    text = MINIMAL + f"[accounts.options]\nack_concurrency = {value}\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), ENV)
    message = str(info.value)
    assert str(tmp_path / "connector.toml") in message
    assert "account #1 ('us')" in message
    assert fragment in message
