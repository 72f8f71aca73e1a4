"""Issue 12: the connector's CI client handles both ways a credential failure can come back.

The simulator answers a wrong supplier_id/token with HTTP 401 by default (what ShipWorks
needs to notice a bad account) or, switched, with HTTP 200 + ``success: false`` (the older
reading). Business refusals stay HTTP 200 + ``reason`` in both modes. Either way the client
raises :class:`CIAuthError` / :class:`CIBusinessError` with the reason and never the token.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from connector.ci.client import CIClient
from connector.errors import CIAuthError, CIBusinessError
from connector.secrets import Secret
from connector.testing.simulator import make_account, running_simulator

WRONG = "WrongToken0123456789abcdefghijk"


@pytest.mark.parametrize("transport", ["socket", "in_process"])
@pytest.mark.parametrize("auth_status", [401, 200])
def test_credential_failure_either_way_is_an_auth_error(
    tmp_path: Path, transport: str, auth_status: int
) -> None:
    with running_simulator(transport) as sim:  # type: ignore[arg-type]
        sim.app.config["SIM_AUTH_ERROR_STATUS"] = auth_status
        account = make_account(sim, tmp_path)
        bad = CIClient.for_account(replace(account, token=Secret(WRONG)))
        with pytest.raises(CIAuthError) as refused:
            bad.get_orders_page()
        assert refused.value.status == auth_status
        assert "Invalid supplier_id or token" in str(refused.value)
        assert WRONG not in f"{refused.value} {refused.value!r}"
        bad.close()
        # A business refusal stays HTTP 200 + reason, and is not mistaken for bad credentials.
        good = CIClient.for_account(account)
        with pytest.raises(CIBusinessError) as business:
            good.mark_exported([999_999_999])
        assert not isinstance(business.value, CIAuthError)
        assert business.value.status == 200
        assert "999999999" in str(business.value)
        good.close()
        # Over a socket the entry is written once the server finished sending: wait for it.
        deadline = time.monotonic() + 5
        while not (log := sim.state.request_log(path_contains="mark_exported")):
            assert time.monotonic() < deadline, "mark_exported never reached the request log"
            time.sleep(0.01)
        assert log[0]["status"] == 200
        assert log[0]["success"] is False
