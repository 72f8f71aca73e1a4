"""The end-to-end tests run on both ledger backends.

An autouse fixture, parametrized ``sqlite`` / ``postgres``, points every ledger the plugin and
the CLI open (:func:`connector.ledger.open_ledger`) at the test's fresh PostgreSQL database
on the ``postgres`` run. Tests that never open a ledger, or that drive SQLite files
themselves (the SIGKILL harness), are marked ``sqlite_only`` and run once.
"""

from __future__ import annotations

import pytest

from tests.ledger_backends import BACKENDS, LedgerBackend


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "e2e_backend" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        params = ("sqlite",) if only_sqlite else BACKENDS
        metafunc.parametrize("e2e_backend", params, indirect=True)


@pytest.fixture(autouse=True)
def e2e_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LedgerBackend:
    if request.param == "sqlite":
        return LedgerBackend("sqlite", None)
    chosen = LedgerBackend("postgres", request.getfixturevalue("postgres_url"))
    chosen.patch(monkeypatch, request.module)
    return chosen
