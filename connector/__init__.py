"""groupon-ci-connector: sell on Groupon Goods from any OMS through CommerceInterface (CI).

Plugin authors write ``from connector import hookimpl``.
"""

from connector.hookspecs import PROJECT_NAME, hookimpl, hookspec

__version__ = "0.9.5"

__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec"]
