"""Tolerant parsing of GPN ``/v3/transactions`` rows into :class:`Transaction`.

The response shape is NOT public (ci-api.md section 9). What this module expects is ASSUMED,
matching the simulator: ``{"transactions": [...], "total": N, "summary": {...}}``, one object
per row with the seed's field names (``transactionId`` for the seed's "Transaction",
``invoiceId`` for its "invoidId" typo). The parser is deliberately forgiving: unknown keys are
dropped, empty strings mean "empty", numbers may arrive as strings, dates with or without
offset (naive dates are read in the time zone the request asked for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, TypeVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load

__all__ = ["Transaction", "TransactionSchema", "parse_transaction", "payable_to_major"]

_T = TypeVar("_T")

# ISO 4217 currencies without minor units (payableAmount is in minor units per the seed).
_ZERO_DECIMAL = frozenset({"JPY", "KRW", "CLP", "ISK", "HUF", "VND", "XOF", "XAF", "UGX"})


def payable_to_major(minor: int, currency: str | None) -> Decimal:
    """Minor units -> major units as a Decimal (two decimals except zero-decimal currencies)."""
    if currency and currency.upper() in _ZERO_DECIMAL:
        return Decimal(minor)
    return Decimal(minor).scaleb(-2)


@dataclass(frozen=True, slots=True)
class Transaction:
    """One GPN transaction. ``None`` = the seed's "empty" (e.g. no orderId for a BONUS)."""

    transaction_id: str
    transaction_type: str
    transaction_status: str
    last_modified: datetime
    transaction_date: datetime | None
    payable_minor: int
    currency: str | None
    gross_amount: Decimal | None = None
    order_id: str | None = None
    short_id: str | None = None
    cart_id: str | None = None
    cart_item_id: str | None = None
    support_id: str | None = None
    link_id: str | None = None
    permalink: str | None = None
    sid: str | None = None
    wid: str | None = None
    invoice_id: str | None = None
    transaction_details: str | None = None
    commission_category: str | None = None
    commission_details: str | None = None
    country: str | None = None
    is_new_user: bool | None = None

    @property
    def payable_amount(self) -> Decimal:
        """The commission in major units (``payableAmount`` is in minor units)."""
        return payable_to_major(self.payable_minor, self.currency)


class _Optional(fields.Field[_T]):
    """A field that may be absent, null or ``""`` (the seed's "empty"): all read as ``None``."""

    def __init__(self, **kwargs: Any) -> None:
        if not kwargs.get("required"):
            kwargs.setdefault("load_default", None)
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)


class _Text(_Optional[str | None]):
    """A string; numbers become strings; ``""``/null become ``None``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationError(f"expected text, got {value!r}")
        text = str(value).strip()
        return text or None


class _Upper(_Text):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        text = super()._deserialize(value, attr, data, **kwargs)
        return None if text is None else text.upper()


class _When(_Optional[datetime | None]):
    """ISO date-time, ``Z`` or offset optional; naive values are read in the request's zone."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> datetime | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValidationError(f"expected an ISO date-time, got {value!r}")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError(f"not an ISO date-time: {value!r}") from None
        if parsed.tzinfo is None:
            zone = getattr(self.root, "zone", UTC)
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(UTC)


class _Money(_Optional[Decimal | None]):
    """A decimal amount from a string or a number; ``""``/null become ``None``."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> Decimal | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationError(f"expected an amount, got {value!r}")
        try:
            amount = Decimal(str(value).strip())  # str() first: floats must not leak binary noise
        except InvalidOperation:
            raise ValidationError(f"not an amount: {value!r}") from None
        if not amount.is_finite():
            raise ValidationError(f"not an amount: {value!r}")
        return amount


class _Minor(fields.Field[int]):
    """An integer count of minor units; integer-valued strings and floats are accepted."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        amount = _Money()._deserialize(value, attr, data)
        if amount is None or amount != amount.to_integral_value():
            raise ValidationError(f"expected whole minor units, got {value!r}")
        return int(amount)


class _Flag(_Optional[bool | None]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "y"):
            return True
        if text in ("false", "0", "no", "n"):
            return False
        raise ValidationError(f"expected true/false, got {value!r}")


class TransactionSchema(Schema):
    """Tolerant (unknown=EXCLUDE) schema for one row; ``load`` returns a :class:`Transaction`.

    ``zone`` is the time zone the request used: it applies to dates without an offset.
    """

    class Meta:
        unknown = EXCLUDE

    transactionId = _Text(required=True, allow_none=False)
    transactionType = _Upper(required=True, allow_none=False)
    transactionStatus = _Upper(required=True, allow_none=False)
    lastModifiedDate = _When(required=True, allow_none=False)
    transactionDate = _When()
    payableAmount = _Minor(required=True)
    currency = _Upper()
    grossAmount = _Money()
    orderId = _Text()
    shortId = _Text()
    cartId = _Text()
    cartItemId = _Text()
    supportId = _Text()
    linkId = _Text()
    permalink = _Text()
    sid = _Text()
    wid = _Text()
    invoiceId = _Text()
    transactionDetails = _Text()
    commissionCategory = _Text()
    commissionDetails = _Text()
    country = _Upper()
    isNewUser = _Flag()

    def __init__(self, zone: tzinfo = UTC, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zone = zone

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Transaction:
        # Some APIs spell an empty id as "" — that row cannot be de-duplicated, so refuse it.
        for key in ("transactionId", "transactionType", "transactionStatus", "lastModifiedDate"):
            if data.get(key) is None:
                raise ValidationError("must not be empty", field_name=key)
        return Transaction(
            transaction_id=data["transactionId"],
            transaction_type=data["transactionType"],
            transaction_status=data["transactionStatus"],
            last_modified=data["lastModifiedDate"],
            transaction_date=data["transactionDate"],
            payable_minor=data["payableAmount"],
            currency=data["currency"],
            gross_amount=data["grossAmount"],
            order_id=data["orderId"],
            short_id=data["shortId"],
            cart_id=data["cartId"],
            cart_item_id=data["cartItemId"],
            support_id=data["supportId"],
            link_id=data["linkId"],
            permalink=data["permalink"],
            sid=data["sid"],
            wid=data["wid"],
            invoice_id=data["invoiceId"],
            transaction_details=data["transactionDetails"],
            commission_category=data["commissionCategory"],
            commission_details=data["commissionDetails"],
            country=data["country"],
            is_new_user=data["isNewUser"],
        )


def _describe(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{k}: {_describe(v)}" for k, v in sorted(messages.items()))
    if isinstance(messages, list):
        return ", ".join(str(m) for m in messages)
    return str(messages)


@lru_cache(maxsize=32)
def _schema_for(zone: tzinfo) -> TransactionSchema:
    # Building a schema costs more than loading a row with it; one per time zone is reused.
    return TransactionSchema(zone=zone)


def parse_transaction(raw: Any, zone: tzinfo = UTC) -> Transaction | str:
    """Parse one row; never raises. Returns the :class:`Transaction` or a problem text that
    names the API fields and values at fault."""
    if not isinstance(raw, Mapping):
        return f"row is not an object: {raw!r:.80}"
    try:
        result = _schema_for(zone).load(dict(raw))
    except ValidationError as exc:
        tid = raw.get("transactionId")
        return f"transactionId={tid!r}: {_describe(exc.messages)}"
    assert isinstance(result, Transaction)
    return result
