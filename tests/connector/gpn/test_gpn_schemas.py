"""Tolerant row parsing: strings vs numbers, empty values, naive dates, bad rows named."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.gpn import Transaction, parse_transaction
from connector.gpn.schemas import payable_to_major

RAW: dict[str, Any] = {
    "transactionId": 1234,
    "transactionType": "sale",
    "transactionStatus": "Commissionable",
    "transactionDate": "2024-03-01T10:00:00+01:00",
    "lastModifiedDate": "2024-03-02T10:00:00",
    "orderId": "",
    "grossAmount": 12.99,
    "payableAmount": "-130",
    "currency": "eur",
    "isNewUser": "false",
    "someFutureField": {"nested": True},
}


def test_tolerant_parse() -> None:
    t = parse_transaction(RAW, ZoneInfo("Europe/Berlin"))
    assert isinstance(t, Transaction)
    assert t.transaction_id == "1234"
    assert t.transaction_type == "SALE"
    assert t.transaction_status == "COMMISSIONABLE"
    assert t.transaction_date == datetime(2024, 3, 1, 9, tzinfo=UTC)
    assert t.last_modified == datetime(2024, 3, 2, 9, tzinfo=UTC)  # naive read in Berlin
    assert t.order_id is None
    assert t.gross_amount == Decimal("12.99")
    assert t.payable_minor == -130
    assert t.payable_amount == Decimal("-1.30")
    assert t.currency == "EUR"
    assert t.is_new_user is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.transaction_status = "INVOICED"  # type: ignore[misc]


def test_zero_decimal_currency() -> None:
    assert payable_to_major(500, "JPY") == Decimal(500)
    assert payable_to_major(500, "USD") == Decimal("5.00")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"lastModifiedDate": None}, "lastModifiedDate: Field may not be null"),
        ({"lastModifiedDate": "03/02/2024"}, "not an ISO date-time: '03/02/2024'"),
        ({"payableAmount": "1.5"}, "payableAmount: expected whole minor units, got '1.5'"),
        ({"grossAmount": "lots"}, "grossAmount: not an amount: 'lots'"),
        ({"isNewUser": "maybe"}, "isNewUser: expected true/false, got 'maybe'"),
        ({"transactionId": ""}, "transactionId: must not be empty"),
        ({"transactionType": ["SALE"]}, "transactionType: expected text"),
    ],
)
def test_bad_rows_name_field_and_value(change: dict[str, Any], needle: str) -> None:
    problem = parse_transaction({**RAW, **change})
    assert isinstance(problem, str)
    assert needle in problem


def test_missing_required_and_non_objects() -> None:
    problem = parse_transaction({"transactionId": "x"})
    assert isinstance(problem, str)
    assert problem.startswith("transactionId='x'")
    assert "payableAmount: Missing data for required field" in problem
    assert parse_transaction(["a"]) == "row is not an object: ['a']"
