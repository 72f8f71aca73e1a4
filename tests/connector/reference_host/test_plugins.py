"""Plugin loading: entry points one at a time, the allowlist, broken plugins, check_pending."""

from __future__ import annotations

import importlib.metadata
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import pluggy
import pytest

from connector import hookimpl
from connector.models import Account, ChannelInfo, ImportBatch
from connector.reference_host import plugins
from connector.reference_host.plugins import (
    ALLOW_ENV,
    PluginInfo,
    get_plugin_manager,
    list_plugins,
)


class StubDist:
    def __init__(self, name: str, version: str) -> None:
        self.metadata = {"Name": name}
        self.version = version


class StubEntryPoint:
    """What importlib.metadata hands out, minus the installed package."""

    def __init__(self, name: str, value: str, dist: StubDist | None) -> None:
        self.name = name
        self.value = value
        self.group = "oms"
        self.dist = dist

    def load(self) -> Any:
        module_name, _, attr = self.value.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr) if attr else module


class GoodPlugin:
    def __init__(self, channel: str) -> None:
        self.channel = channel

    @hookimpl
    def oms_channel_info(self) -> ChannelInfo:
        return ChannelInfo(self.channel, "1.2.3", frozenset(), ())

    @hookimpl
    def oms_import_orders(self, account: Account) -> ImportBatch | None:
        return ImportBatch() if account.channel == self.channel else None


class MisnamedPlugin:
    @hookimpl
    def oms_import_order(self, account: Account) -> None:  # missing the "s"
        return None


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[StubEntryPoint]:
    """Fake installed plugins: two good ones, one whose import fails, one misnamed hook."""
    for mod_name, obj in (
        ("fake_alpha", GoodPlugin("alpha")),
        ("fake_beta", GoodPlugin("beta")),
        ("fake_misnamed", MisnamedPlugin()),
    ):
        module = types.ModuleType(mod_name)
        module.plugin = obj  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, mod_name, module)
    monkeypatch.delitem(sys.modules, "fake_broken_does_not_exist", raising=False)
    eps = [
        StubEntryPoint("alpha", "fake_alpha:plugin", StubDist("oms-alpha", "1.0.0")),
        StubEntryPoint("beta", "fake_beta:plugin", StubDist("oms-beta", "2.0.0")),
        StubEntryPoint(
            "broken", "fake_broken_does_not_exist:plugin", StubDist("oms-broken", "0.1")
        ),
        StubEntryPoint("misnamed", "fake_misnamed:plugin", StubDist("oms-misnamed", "0.2")),
    ]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    return eps


def _names(pm: pluggy.PluginManager) -> set[str]:
    return {info.name for info in list_plugins(pm)}


def _import_groupon_plugin_or_skip() -> None:
    try:
        importlib.import_module("connector.plugin")
    except ImportError as exc:
        pytest.skip(f"connector.plugin not importable yet: {exc}")


def test_groupon_entry_point_is_discoverable() -> None:
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="oms")}
    assert "groupon" in eps, "pyproject declares [project.entry-points.oms] groupon"
    ep = eps["groupon"]
    assert ep.module == "connector.plugin"
    assert ep.dist is not None
    assert ep.dist.metadata["Name"] == "groupon-ci-connector"
    _import_groupon_plugin_or_skip()
    if ep.attr is None:
        # The editable install predates pyproject's "connector.plugin:plugin"; `make setup`
        # (pyproject is newer than .venv/.installed) refreshes it.
        pytest.xfail(
            f"installed entry point is {ep.value!r} but pyproject declares "
            "'connector.plugin:plugin': stale install metadata, re-run pip install -e ."
        )
    pm = get_plugin_manager(allow=["groupon"])
    assert pm.load_errors == []
    infos = {info.name: info for info in list_plugins(pm)}
    assert infos["groupon"].dist == "groupon-ci-connector"
    assert "oms_import_orders" in infos["groupon"].hooks
    assert "groupon" in [c.name for c in pm.hook.oms_channel_info()]


def test_declared_groupon_entry_point_loads_through_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _import_groupon_plugin_or_skip()
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["entry-points"]
    ep = importlib.metadata.EntryPoint("groupon", declared["oms"]["groupon"], "oms")
    monkeypatch.setattr(plugins, "_entry_points", lambda: [ep])
    pm = get_plugin_manager(allow=["groupon"])
    assert pm.load_errors == []
    [info] = list_plugins(pm)
    assert set(info.hooks) == {
        "oms_channel_info",
        "oms_channel_products",
        "oms_channel_stats",
        "oms_confirm_cancellations",
        "oms_dispatch",
        "oms_dispatch_many",
        "oms_void_shipment",
        "oms_flush_outbox",
        "oms_held_lines",
        "oms_import_orders",
        "oms_mark_exported",
        "oms_report_carrier_events",
        "oms_sla_at_risk",
    }
    assert [c.name for c in pm.hook.oms_channel_info()] == ["groupon"]


def test_loads_every_installed_plugin_and_reports_the_broken_by_name(
    installed: list[StubEntryPoint],
) -> None:
    pm = get_plugin_manager()
    assert _names(pm) == {"alpha", "beta"}
    messages = {e.name: str(e) for e in pm.load_errors}
    assert set(messages) == {"broken", "misnamed"}
    assert messages["broken"].startswith(
        "plugin 'broken' from dist oms-broken failed to load: ModuleNotFoundError"
    )
    assert "plugin 'misnamed' from dist oms-misnamed failed validation" in messages["misnamed"]
    assert "oms_import_order" in messages["misnamed"]
    # The misnamed plugin was taken out again, so the manager is consistent.
    assert pm.get_plugin("misnamed") is None
    pm.check_pending()


def test_allowlist_empty_loads_none(
    installed: list[StubEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW_ENV, "")
    pm = get_plugin_manager()
    assert _names(pm) == set()
    assert pm.load_errors == []


def test_allowlist_one(installed: list[StubEntryPoint], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, " beta ")
    pm = get_plugin_manager()
    assert _names(pm) == {"beta"}
    # The broken plugin was never imported, so it reports nothing.
    assert pm.load_errors == []


def test_allowlist_unknown_name_is_reported(
    installed: list[StubEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW_ENV, "alpha,gamma")
    pm = get_plugin_manager()
    assert _names(pm) == {"alpha"}
    [error] = pm.load_errors
    assert error.name == "gamma"
    assert "'gamma' is named in OMS_LOAD_PLUGINS" in str(error)
    assert "alpha, beta, broken, misnamed" in str(error)


def test_allow_argument_overrides_the_environment(
    installed: list[StubEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW_ENV, "")
    assert _names(get_plugin_manager(allow=["alpha"])) == {"alpha"}
    assert _names(get_plugin_manager(load_entrypoints=False)) == set()


def test_entry_point_naming_a_module_without_hooks_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("fake_module_plugin")
    module.plugin = GoodPlugin("alpha")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_module_plugin", module)
    ep = StubEntryPoint("modonly", "fake_module_plugin", None)
    monkeypatch.setattr(plugins, "_entry_points", lambda: [ep])
    pm = get_plugin_manager(allow=["modonly"])
    [error] = pm.load_errors
    assert "plugin 'modonly' from dist unknown implements no oms hook" in str(error)
    assert pm.get_plugin("modonly") is None


def test_check_pending_catches_a_misnamed_impl(pm: pluggy.PluginManager) -> None:
    pm.register(MisnamedPlugin(), name="misnamed")
    try:
        with pytest.raises(pluggy.PluginValidationError, match="oms_import_order"):
            pm.check_pending()
    finally:
        pm.unregister(name="misnamed")


def test_list_plugins_reports_dist_version_and_hooks(installed: list[StubEntryPoint]) -> None:
    pm = get_plugin_manager(allow=["alpha"])
    assert list_plugins(pm) == [
        PluginInfo(
            name="alpha",
            dist="oms-alpha",
            version="1.0.0",
            hooks=("oms_channel_info", "oms_import_orders"),
        )
    ]
    assert list_plugins(pm)[0].to_dict()["hooks"] == ["oms_channel_info", "oms_import_orders"]


def test_each_call_builds_a_new_manager() -> None:
    first = get_plugin_manager(load_entrypoints=False)
    second = get_plugin_manager(load_entrypoints=False)
    first.register(GoodPlugin("alpha"), name="alpha")
    assert second.get_plugin("alpha") is None
