"""Merchant-operations logic: business days, the SLA clock and the sales-threshold guard.

Everything here is pure (no I/O); the CLI commands and the plugin feed it ledger rows.
"""
