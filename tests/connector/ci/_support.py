"""Helpers shared by the CI client tests (fixtures are in this folder's conftest.py)."""

from __future__ import annotations

from typing import Any

from connector.ci.client import CIClient
from connector.secrets import Secret

BASE = "https://ci.test"
ORDERS_URL = f"{BASE}/api/v4/get_orders"


def make_client(**kwargs: Any) -> CIClient:
    """A client of supplier 90001 at :data:`BASE`: a token-shaped secret, two retries without
    backoff and a sleep that returns at once; ``kwargs`` override any of them."""
    options: dict[str, Any] = {
        "base_url": BASE,
        "supplier_id": "90001",
        "token": Secret("tok-" + "x" * 27),
        "max_retries": 2,
        "backoff": 0.0,
        "sleep": lambda _s: None,
    }
    options.update(kwargs)
    return CIClient(**options)
