"""GPN transaction store (placeholder until the GPN work lands)."""

from __future__ import annotations


class GPNStore:
    """Transactions and client credentials of the simulated GPN Transaction API."""

    def reset(self) -> None:
        """Forget every client and transaction."""
