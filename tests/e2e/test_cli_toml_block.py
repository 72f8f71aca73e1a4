"""Issue 12: the connector.toml account block mock-ci-server prints is ready to paste: the
connector's own config loader accepts it and builds an account that reaches the simulator."""

from __future__ import annotations

from pathlib import Path

from connector.ci.client import CIClient
from connector.config import load_config
from connector.testing.simulator import running_simulator
from mock_ci_server.cli import connector_toml


def test_printed_block_loads_and_talks_to_the_simulator(tmp_path: Path) -> None:
    with running_simulator("socket", supplier_id="90001") as sim:
        block = connector_toml(sim.url, "90001", "US", "CI_TOKEN_90001")
        path = tmp_path / "connector.toml"
        path.write_text(f'[connector]\ndata_dir = "data"\n\n{block}\n', encoding="utf-8")
        config = load_config(path, environ={"CI_TOKEN_90001": sim.token})
        [account] = config.accounts
        assert (account.name, account.supplier_id, account.base_url) == (
            "sim-90001",
            "90001",
            sim.url,
        )
        client = CIClient.for_account(account)
        try:
            assert client.get_orders_page().meta.no_of_items == 0
        finally:
            client.close()
