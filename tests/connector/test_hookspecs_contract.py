"""Meta-tests that keep the hook contract documented and tested (datasette's
``test_plugin_hooks_are_documented`` / ``test_plugin_hooks_have_tests``)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from connector import hookspecs

TESTS_ROOT = Path(__file__).resolve().parents[1]


def _hook_names() -> list[str]:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return sorted(name for name in dir(pm.hook) if name.startswith("oms_"))


def _spec(name: str) -> pluggy.HookCaller:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    caller: pluggy.HookCaller = getattr(pm.hook, name)
    return caller


HOOKS = _hook_names()


def test_the_contract_has_the_expected_hooks() -> None:
    assert HOOKS == [
        "oms_channel_info",
        "oms_channel_products",
        "oms_channel_stats",
        "oms_confirm_cancellations",
        "oms_dispatch",
        "oms_dispatch_many",
        "oms_flush_outbox",
        "oms_held_lines",
        "oms_import_orders",
        "oms_mark_exported",
        "oms_report_carrier_events",
        "oms_sla_at_risk",
        "oms_void_shipment",
    ]


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_current_arguments(name: str) -> None:
    caller = _spec(name)
    assert caller.spec is not None
    doc = inspect.getdoc(caller.spec.function) or ""
    documented = re.findall(r":param (\w+):", doc)
    takes = [*caller.spec.argnames, *caller.spec.kwargnames]
    assert documented == takes, f"{name}: docstring documents {documented}, spec takes {takes}"
    assert ":returns:" in doc, f"{name}: no :returns:"
    assert re.search(r"\.\. versionadded:: \d+\.\d+\.\d+", doc), f"{name}: no versionadded"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_states_its_calling_mode(name: str) -> None:
    caller = _spec(name)
    assert caller.spec is not None
    doc = inspect.getdoc(caller.spec.function) or ""
    if caller.spec.opts.get("firstresult"):
        assert "Calling mode: firstresult. Stops at the first non-``None`` result." in doc
        # Ownership is decided by the account's channel, so every firstresult hook takes one.
        assert caller.spec.argnames[0] == "account"
    else:
        assert "Calling mode: fan-out" in doc


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test(name: str) -> None:
    pattern = re.compile(rf"^\s*def test_hook_{name}\b", re.MULTILINE)
    found = [
        path
        for path in TESTS_ROOT.rglob("test_*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert found, f"no test named test_hook_{name} under {TESTS_ROOT}"


CHANGELOG = TESTS_ROOT.parent / "CHANGELOG.md"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_versions_are_released_and_in_the_changelog(name: str) -> None:
    """Every ``versionadded``/``versionchanged`` names a version not newer than the package,
    and the CHANGELOG section of that version mentions the hook (contract v2, issue 10)."""
    from connector import __version__

    caller = _spec(name)
    assert caller.spec is not None
    doc = inspect.getdoc(caller.spec.function) or ""
    changelog = CHANGELOG.read_text(encoding="utf-8")
    sections = dict(
        re.findall(r"^## \[?(\d+\.\d+\.\d+)\]?[^\n]*\n(.*?)(?=^## |\Z)", changelog, re.M | re.S)
    )

    def as_tuple(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    for kind, version in re.findall(r"\.\. (versionadded|versionchanged):: (\d+\.\d+\.\d+)", doc):
        assert as_tuple(version) <= as_tuple(__version__), f"{name}: {kind} {version} unreleased"
        if version == "0.1.0":
            continue  # the first release predates the changelog
        assert version in sections, f"CHANGELOG.md has no section for {version}"
        assert name in sections[version], f"CHANGELOG.md {version} does not mention {name}"


def test_a_spec_default_keeps_old_plugins_and_old_callers_working() -> None:
    """``force`` of ``oms_flush_outbox`` (0.2.0) has a default in the spec: a 0.1 plugin that
    does not take it is still called when a host passes it, and a 0.2 plugin gets the spec's
    default from a host that does not pass it."""
    seen: list[object] = []

    class OldPlugin:
        @hookspecs.hookimpl
        def oms_flush_outbox(self, account: object) -> list[object]:
            seen.append(("old", account))
            return []

    class NewPlugin:
        @hookspecs.hookimpl
        def oms_flush_outbox(self, account: object, force: bool = False) -> None:
            seen.append(("new", force))

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(OldPlugin())
    pm.register(NewPlugin())
    assert pm.hook.oms_flush_outbox(account="a", force=True) == []
    assert seen == [("new", True), ("old", "a")]
    seen.clear()
    pm.hook.oms_flush_outbox(account="a")
    assert seen == [("new", False), ("old", "a")]
