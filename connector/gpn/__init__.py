"""Groupon Partner Network (GPN) Transaction API client (SEC1/SEC2, 30-day windows)."""

from connector.gpn.client import GPNClient, TransactionsResult, split_windows
from connector.gpn.schemas import Transaction, parse_transaction

__all__ = ["GPNClient", "Transaction", "TransactionsResult", "parse_transaction", "split_windows"]
