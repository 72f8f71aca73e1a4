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
        "oms_channel_stats",
        "oms_confirm_cancellations",
        "oms_dispatch",
        "oms_flush_outbox",
        "oms_held_lines",
        "oms_import_orders",
        "oms_mark_exported",
        "oms_report_carrier_events",
        "oms_sla_at_risk",
    ]


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_current_arguments(name: str) -> None:
    caller = _spec(name)
    assert caller.spec is not None
    doc = inspect.getdoc(caller.spec.function) or ""
    documented = re.findall(r":param (\w+):", doc)
    assert documented == list(caller.spec.argnames), (
        f"{name}: docstring documents {documented}, spec takes {caller.spec.argnames}"
    )
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
