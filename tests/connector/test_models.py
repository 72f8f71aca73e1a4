"""connector.models: the quick ``__init__`` of the values built per imported line behaves as
dataclass's own (parameters, defaults, errors, frozen)."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from decimal import Decimal
from typing import Any

import pytest

from connector.models import (
    Address,
    LineOutcome,
    LineResult,
    Order,
    OrderLine,
    SkuComponent,
    StoredOrder,
    _quick_init,
)

QUICK = [Address, LineResult, Order, OrderLine, SkuComponent, StoredOrder]


def _plain_twin(cls: type[Any]) -> type[Any]:
    """The same fields as a dataclass with dataclass's own ``__init__``."""
    specs = [
        (f.name, f.type, dataclasses.field(default=f.default))
        if f.default is not dataclasses.MISSING
        else (f.name, f.type)
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True, slots=True)


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_quick_init_has_dataclass_parameters_and_defaults(cls: type[Any]) -> None:
    twin = _plain_twin(cls)
    ours = inspect.signature(cls).parameters
    theirs = inspect.signature(twin).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


def test_quick_init_builds_equal_frozen_values() -> None:
    line = OrderLine(7, None, "SKU", None, "Name", 2, Decimal("1.50"))
    assert (line.components, line.discount, line.status, line.voucher_code) == (
        (),
        Decimal("0"),
        "open",
        "",
    )
    again = OrderLine(
        ci_lineitemid=7,
        fulfillment_lineitem_id=None,
        sku="SKU",
        bom_sku=None,
        name="Name",
        quantity=2,
        unit_price=Decimal("1.50"),
    )
    assert line == again
    assert hash(line) == hash(again)
    assert dataclasses.replace(line, quantity=3).quantity == 3
    assert pickle.loads(pickle.dumps(line)) == line  # noqa: S301 (our own bytes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        line.quantity = 3  # type: ignore[misc]
    assert LineResult(1, LineOutcome.ACCEPTED).reason == ""
    assert Address("N", "A1") == Address("N", "A1", "", "", None, "", None, "")


def test_quick_init_refuses_the_same_calls_as_dataclass() -> None:
    with pytest.raises(TypeError, match="missing 2 required positional arguments"):
        Address()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        Address("N", "A1", street="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        Address("N", "A1", name="M")  # type: ignore[misc]


def test_quick_init_refuses_classes_it_cannot_build() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Later:
        items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="needs dataclass's own __init__"):
        _quick_init(Later)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="needs dataclass's own __init__"):
        _quick_init(Checked)
