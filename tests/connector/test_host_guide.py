"""The "write your own host" code in docs/host-guide.md runs: extracted from the markdown and
driven against the CI simulator over a real socket (issue 10: docs that are tested)."""

from __future__ import annotations

import re
import types
from pathlib import Path

from connector.demo import ups_tracking_number
from connector.models import Account, LineOutcome
from connector.testing.simulator import running_simulator

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "host-guide.md"


def _minimal_host_source() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- minimal-host:start -->\s*```python\n(.*?)```\s*<!-- minimal-host:end -->",
        text,
        re.S,
    )
    assert found, "docs/host-guide.md lost its minimal-host block"
    return found.group(1)


def test_the_minimal_host_is_small() -> None:
    lines = [ln for ln in _minimal_host_source().splitlines() if ln.strip()]
    assert 50 <= len(lines) <= 110, len(lines)


def test_the_guide_minimal_host_imports_acknowledges_and_ships(tmp_path: Path) -> None:
    module = types.ModuleType("minimal_host_from_the_guide")
    exec(compile(_minimal_host_source(), str(GUIDE), "exec"), module.__dict__)  # noqa: S102
    with running_simulator("socket") as sim:
        sim.seed(orders=12, lines_per_order=(1, 3))
        account = Account.from_values(
            name="us",
            supplier_id=sim.supplier_id,
            token=sim.token,
            base_url=sim.url,
            data_dir=tmp_path / "data",
            options={"watch_cancellations": False, "max_orders_per_import": 5},
        )
        host = module.MiniHost(str(tmp_path / "oms.sqlite3"))
        try:
            assert host.sync(account) == 12  # three batches of at most five orders
            open_lines = host.db.execute("SELECT COUNT(*) FROM lines").fetchone()[0]
            assert open_lines == len(sim.lines())
            assert all(line["exported"] for line in sim.lines())
            results = host.ship_open_lines(account, "UPS", ups_tracking_number)
            assert len(results) == open_lines
            assert {r.outcome for r in results} == {LineOutcome.ACCEPTED}
            assert host.sync(account) == 0  # nothing new, nothing duplicated
            assert host.db.execute("SELECT COUNT(*) FROM lines").fetchone()[0] == open_lines
        finally:
            host.close()
        shipped = [line for line in sim.lines() if line["tracking"]]
        assert len(shipped) == open_lines
