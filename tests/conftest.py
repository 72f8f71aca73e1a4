"""Suite-wide fixtures: the PostgreSQL server and the ``ledger_backend`` parametrization
(defined in :mod:`tests.ledger_backends`)."""

from tests.ledger_backends import (
    _postgres_databases,
    ledger_backend,
    postgres_server,
    postgres_url,
)

__all__ = ["_postgres_databases", "ledger_backend", "postgres_server", "postgres_url"]
