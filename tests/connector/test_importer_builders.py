"""Evaluation builds Order, OrderLine and Address through positional builders (a plain class
of the same slots, then ``__class__`` assignment): what comes out must be the models' own
instances, indistinguishable from ones their constructors build."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from connector.importer import (
    _address,
    _build_address,
    _build_order,
    _build_order_line,
    _positional_builder,
)
from connector.models import Address, Order, OrderLine, SkuComponent

SHIP = datetime(2024, 3, 2, 17, tzinfo=UTC)
LINE_ARGS: tuple[Any, ...] = (
    7, "F7", "SKU-1", None, "Board", 2, Decimal("10.75"), (SkuComponent("HOST-1", 1),),
    None, Decimal("0"), "open", SHIP, "uuid-7", "", "a gift",
)  # fmt: skip
ADDRESS_ARGS = ["Jane Example", "1 Main St", "", "Portland", "OR", "97204", "US", "555"]


def _same(built: Any, made: Any) -> None:
    assert type(built) is type(made)
    assert built == made
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)
    assert dataclasses.asdict(built) == dataclasses.asdict(made)
    assert pickle.loads(pickle.dumps(built)) == made  # noqa: S301 (our own bytes)
    assert copy.copy(built) == made
    field = dataclasses.fields(built)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, field, None)


def test_built_values_are_the_models_own() -> None:
    line = _build_order_line(*LINE_ARGS)
    _same(line, OrderLine(*LINE_ARGS))
    ship_to = _build_address(*ADDRESS_ARGS)
    _same(ship_to, Address(*ADDRESS_ARGS))
    order_args = (
        "us", "O1", SHIP, SHIP, ship_to, (line,), Decimal("21.50"), None, None, "std", "Shop",
    )  # fmt: skip
    _same(_build_order(*order_args), Order(*order_args))
    assert _build_order(*order_args).ci_lineitemids == (7,)


def test_addresses_of_another_shape_go_through_the_constructor() -> None:
    # A short list (defaults fill the rest) or a value of another type: Address decides, as
    # before (including its errors).
    assert _address(["Jane", "1 Main St"]) == Address("Jane", "1 Main St")
    assert type(_address(ADDRESS_ARGS)) is Address
    with pytest.raises(TypeError):
        _address(5)  # type: ignore[arg-type]


@dataclass(frozen=True)
class NoSlots:
    a: int


@dataclass(frozen=True, slots=True)
class Base:
    a: int


@dataclass(frozen=True, slots=True)
class Derived(Base):
    b: int = 0


def test_a_class_of_another_layout_keeps_its_constructor() -> None:
    assert _positional_builder(NoSlots) is NoSlots
    assert _positional_builder(Derived) is Derived
    build = _positional_builder(Base)
    assert build is not Base
    _same(build(1), Base(1))


@dataclass(frozen=True, slots=True)
class Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("negative")


def test_a_class_with_post_init_keeps_its_constructor_and_its_checks() -> None:
    build = _positional_builder(Checked)
    assert build is Checked
    with pytest.raises(ValueError, match="negative"):
        build(-1)
