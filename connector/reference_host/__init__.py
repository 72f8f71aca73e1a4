"""A small reference host OMS: plugin loading, a typed hook facade, and a correct sync cycle.

Host developers read this package as the worked example of the contract in
:mod:`connector.hookspecs` (see ``docs/host-guide.md``).
"""

from connector.reference_host.facade import ChannelFacade, NoChannelPlugin
from connector.reference_host.host import HOST_DB_NAME, ReferenceHost, SyncReport
from connector.reference_host.plugins import (
    PluginInfo,
    PluginLoadError,
    get_plugin_manager,
    list_plugins,
)
from connector.reference_host.store import HostStore, HostStoreError

__all__ = [
    "HOST_DB_NAME",
    "ChannelFacade",
    "HostStore",
    "HostStoreError",
    "NoChannelPlugin",
    "PluginInfo",
    "PluginLoadError",
    "ReferenceHost",
    "SyncReport",
    "get_plugin_manager",
    "list_plugins",
]
