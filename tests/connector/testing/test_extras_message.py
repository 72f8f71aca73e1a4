"""Without the simulator/testing extras, the fixtures and the demo say what to install."""

from __future__ import annotations

import importlib.util

import pytest

from connector.testing import simulator


def test_missing_extra_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def hide_flask(name: str, *args: object) -> object:
        return None if name == "flask" else real(name)

    monkeypatch.setattr(simulator.importlib.util, "find_spec", hide_flask)
    with pytest.raises(simulator.MissingExtraError) as info:
        simulator.require_extras("socket")
    assert "groupon-ci-connector[simulator]" in str(info.value)
    assert "flask" in str(info.value)


def test_in_process_needs_the_testing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        simulator.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "responses" else real(name),
    )
    with pytest.raises(simulator.MissingExtraError, match=r"\[testing\]"):
        simulator.require_extras("in_process")
