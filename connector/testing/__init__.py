"""Pytest fixtures for host developers (see README, \"Testing your host\")."""
