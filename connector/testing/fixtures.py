"""pytest fixtures for host developers: a CI simulator, a Groupon account, a plugin manager.

Installed with the package as a pytest plugin (entry point ``pytest11``), so a host's test
suite can simply ask for them::

    def test_my_host_imports_groupon_orders(groupon_simulator, groupon_account, oms_facade):
        groupon_simulator.seed(orders=5, lines_per_order=(1, 2))
        batch = oms_facade.import_orders(account=groupon_account)
        ...

Nothing here runs unless a test requests a fixture: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pluggy
import pytest

from connector.models import Account
from connector.reference_host.facade import ChannelFacade
from connector.testing.simulator import (
    MissingExtraError,
    SimulatorHandle,
    make_account,
    require_extras,
    running_simulator,
)

__all__ = [
    "groupon_account",
    "groupon_simulator",
    "groupon_simulator_in_process",
    "oms_facade",
    "oms_plugin_manager",
]


@pytest.fixture
def groupon_simulator() -> Iterator[SimulatorHandle]:
    """A fresh CI simulator on ``127.0.0.1`` (free port) with one US account (no orders yet:
    call ``.seed(orders=N, ...)``)."""
    _require("socket")
    with running_simulator("socket") as sim:
        yield sim


@pytest.fixture
def groupon_simulator_in_process() -> Iterator[SimulatorHandle]:
    """The same simulator reached without a socket: ``requests`` calls are routed into the
    app for the duration of the test."""
    _require("in_process")
    with running_simulator("in_process") as sim:
        yield sim


def _require(transport: str) -> None:
    """Fail the test with a clear message (not an ImportError trace) when an extra is missing."""
    try:
        require_extras(transport, "the groupon_simulator fixtures")
    except MissingExtraError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def groupon_account(groupon_simulator: SimulatorHandle, tmp_path: Path) -> Account:
    """An account for ``groupon_simulator`` with its ledger and an editable copy of the
    shipped mappings under ``tmp_path``."""
    return make_account(groupon_simulator, tmp_path)


@pytest.fixture
def oms_plugin_manager() -> Iterator[pluggy.PluginManager]:
    """A plugin manager with the ``oms`` hook specs and the Groupon plugin registered (no
    entry-point autoload, so whatever else is installed stays out of the test)."""
    from connector.plugin import GrouponPlugin
    from connector.reference_host.plugins import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    plugin = GrouponPlugin()
    pm.register(plugin, name="groupon")
    try:
        yield pm
    finally:
        plugin.close()


@pytest.fixture
def oms_facade(oms_plugin_manager: pluggy.PluginManager) -> ChannelFacade:
    """The typed host-side facade over ``oms_plugin_manager`` (keyword-only calls)."""
    return ChannelFacade(oms_plugin_manager)
