"""Placeholder: fixtures are added by the test-kit work."""
