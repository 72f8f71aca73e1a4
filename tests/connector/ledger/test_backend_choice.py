"""The backend is chosen by ``ledger_url``; psycopg is an optional extra the SQLite path never
imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# A child interpreter where importing psycopg (or procrastinate) fails, as without the extra.
_NO_PSYCOPG = """
import sys
sys.modules["psycopg"] = None
sys.modules["procrastinate"] = None
"""


@pytest.mark.sqlite_only  # runs a child process of its own
def test_the_plugin_runs_on_sqlite_without_psycopg_and_names_the_extra_otherwise(
    tmp_path: Path,
) -> None:
    script = _NO_PSYCOPG + textwrap.dedent(
        f"""
        from dataclasses import replace
        from datetime import UTC, datetime
        from pathlib import Path
        import connector.plugin
        from connector.errors import LedgerError
        from connector.ledger import open_ledger
        from connector.models import Account
        from connector.secrets import Secret

        account = Account(name="us", channel="groupon", supplier_id="1",
                          token=Secret("t" * 31), data_dir=Path({str(tmp_path)!r}))
        ledger = open_ledger(account)
        ledger.stage_line(ci_lineitemid=1, orderid="A", now=datetime.now(UTC), quantity=1)
        assert ledger.get_line(1) is not None
        ledger.close()
        try:
            open_ledger(replace(account, ledger_url="postgresql://u@db/x"))
        except LedgerError as exc:
            print("ERROR:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "psycopg is not installed" in done.stdout
    assert "groupon-ci-connector[postgres]" in done.stdout
