"""Every ledger test runs on both backends: SQLite and PostgreSQL.

The autouse ``backend`` fixture is parametrized ``sqlite`` / ``postgres``. On PostgreSQL it
points the test module's own ``open_ledger`` / ``open_ledger_file`` (and the package's
``open_ledger``) at the test's fresh database, so a test written against the ledger API runs
unchanged on both. A test that checks SQLite itself (the file, its PRAGMAs, a corrupt file) is
marked ``@pytest.mark.sqlite_only`` and runs once; one about PostgreSQL alone is marked
``postgres_only``.
"""

from __future__ import annotations

import pytest

from tests.ledger_backends import BACKENDS, LedgerBackend


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        params = (
            ("sqlite",)
            if marked("sqlite_only")
            else ("postgres",)
            if marked("postgres_only")
            else BACKENDS
        )
        metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LedgerBackend:
    if request.param == "sqlite":
        return LedgerBackend("sqlite", None)
    chosen = LedgerBackend("postgres", request.getfixturevalue("postgres_url"))
    chosen.patch(monkeypatch, request.module)
    return chosen
