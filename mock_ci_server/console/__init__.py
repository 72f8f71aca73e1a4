"""The simulator's web console under ``/_sim/ui/`` (server-rendered Flask + Jinja, plain forms).

Pages: accounts, orders and lines (search + paging), the live request log, Groupon's supplier-UI
file flows (export orders, upload tracking), cancellations with a reason, the simulator's
levers (clock, faults, suspend/reinstate, seed, reset) and a local Swagger UI. Routes are thin:
they parse a form (:mod:`.forms`), call one :class:`~mock_ci_server.state.SimState` method and
render a template. See ``docs/console.md``.
"""

from mock_ci_server.console.views import blueprint, register

__all__ = ["blueprint", "register"]
