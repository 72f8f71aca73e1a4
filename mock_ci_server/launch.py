"""Entry point of ``mock-ci-server``: a clear message when the simulator extra is missing.

The connector installs without the simulator's web stack (flask, waitress); this launcher
imports the CLI only when they are there, instead of ending in an ImportError traceback.
"""

from __future__ import annotations

_STACK = ("flask", "werkzeug", "waitress")


def main() -> None:
    """Run :func:`mock_ci_server.cli.main`, or say which extra to install."""
    try:
        from mock_ci_server.cli import main as run
    except ModuleNotFoundError as exc:
        if exc.name not in _STACK:
            raise
        raise SystemExit(
            f"mock-ci-server needs {exc.name}, which is not installed: "
            "pip install 'groupon-ci-connector[simulator]'"
        ) from None
    run()


if __name__ == "__main__":  # pragma: no cover
    main()
