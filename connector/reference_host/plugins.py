"""Building the host's plugin manager and finding the installed channel plugins.

Entry points of the group ``oms`` are loaded one at a time (not with pluggy's
``load_setuptools_entrypoints``, which lets one broken plugin take the host down). A plugin that
fails to import, to register or to match the specs is reported by name as a
:class:`PluginLoadError` and left out; the others load normally.

``OMS_LOAD_PLUGINS`` is an allowlist of entry-point names (comma separated). Unset: load every
installed plugin. Set but empty: load none.

Plugin state: an entry-point object that offers ``new_instance()`` (the Groupon plugin does)
is asked for a fresh instance for every manager built here, so two managers in one process
never share clients, ledgers or counters.

Channel ownership: each channel is owned by one plugin per manager. :class:`OmsPluginManager`
asks each plugin registered on it for its ``oms_channel_info`` and refuses (``ValueError``,
reported as a :class:`PluginLoadError` for installed plugins) a second plugin that claims a
channel another registered plugin already owns.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pluggy

from connector import hookspecs

__all__ = [
    "ALLOW_ENV",
    "ENTRYPOINT_GROUP",
    "OmsPluginManager",
    "PluginInfo",
    "PluginLoadError",
    "get_plugin_manager",
    "list_plugins",
    "load_entrypoint_plugins",
]

log = logging.getLogger(__name__)

ENTRYPOINT_GROUP = hookspecs.PROJECT_NAME
"""The entry-point group channel plugins register under (``oms``)."""

ALLOW_ENV = "OMS_LOAD_PLUGINS"
"""Environment variable holding the allowlist of entry-point names."""


class PluginLoadError(Exception):
    """An installed plugin could not be loaded; the message names the plugin and its dist."""

    def __init__(self, message: str, *, name: str, dist: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.dist = dist


@dataclass(frozen=True, slots=True)
class _DistInfo:
    name: str | None
    version: str | None


class OmsPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that remembers where each plugin came from and which
    installed plugins failed to load (instead of raising on the first one)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.load_errors: list[PluginLoadError] = []
        self._dists: dict[str, _DistInfo] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin``, refusing it when it claims a channel another registered plugin
        already owns (``oms_channel_info`` names); the message names both plugins.

        :raises ValueError: the channel is already owned (the plugin is left unregistered).
        """
        registered = super().register(plugin, name)
        if registered is None:
            return None
        claims = _channels_of(self, plugin)
        for other_name, other in self.list_name_plugin():
            if other is None or other is plugin:
                continue
            clash = claims & _channels_of(self, other)
            if clash:
                self.unregister(plugin)
                raise ValueError(
                    f"plugin {registered!r} claims channel(s) {', '.join(sorted(clash))}, "
                    f"already owned by plugin {other_name!r}: one plugin per channel (remove "
                    f"one of them, or leave it out with {ALLOW_ENV})"
                )
        return registered

    def record_dist(self, plugin_name: str, dist: str | None, version: str | None) -> None:
        """Remember the distribution a registered plugin came from (for :func:`list_plugins`)."""
        self._dists[plugin_name] = _DistInfo(dist, version)

    def dist_of(self, plugin_name: str) -> tuple[str | None, str | None]:
        """``(dist name, version)`` of a plugin, ``(None, None)`` if it was registered directly."""
        info = self._dists.get(plugin_name)
        return (info.name, info.version) if info else (None, None)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One registered plugin, for ``ci-connector plugins``.

    :ivar name: the name it is registered under (the entry-point name for installed plugins).
    :ivar dist: the distribution that installed it, ``None`` if registered directly.
    :ivar version: the distribution's version, else the plugin's ``__version__``, else ``None``.
    :ivar hooks: the ``oms_*`` hooks it implements, sorted.
    """

    name: str
    dist: str | None
    version: str | None
    hooks: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "dist": self.dist,
            "version": self.version,
            "hooks": list(self.hooks),
        }


def _channels_of(pm: pluggy.PluginManager, plugin: object) -> frozenset[str]:
    """The channel names ``plugin``'s own ``oms_channel_info`` returns (empty when it has
    none, or when it fails: a broken description is not a claim)."""
    caller = getattr(pm.hook, "oms_channel_info", None)
    if caller is None:
        return frozenset()
    names: set[str] = set()
    for impl in caller.get_hookimpls():
        if impl.plugin is not plugin:
            continue
        try:
            info = impl.function()
        except Exception as exc:  # a plugin's own code may raise anything; no claim then
            log.warning("oms_channel_info of %r failed: %s", plugin, exc)
            continue
        name = getattr(info, "name", None)
        if isinstance(name, str):
            names.add(name)
    return frozenset(names)


def parse_allowlist(environ: Mapping[str, str]) -> frozenset[str] | None:
    """The allowlist from ``OMS_LOAD_PLUGINS``: ``None`` when unset (load all), else the names
    (an empty set when set but empty: load none)."""
    raw = environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    # A seam for tests, which replace it with stub entry points (as pluggy's own tests do).
    return list(importlib.metadata.entry_points(group=ENTRYPOINT_GROUP))


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def load_entrypoint_plugins(
    pm: OmsPluginManager, *, allow: Iterable[str] | None
) -> list[PluginLoadError]:
    """Load and register each ``oms`` entry point allowed by ``allow`` (``None`` = all).

    Every failure is caught and returned (and added to ``pm.load_errors``); a plugin that fails
    is not left half-registered. A name in ``allow`` that no installed plugin has is reported
    too, since it is almost always a typo.
    """
    allowed = None if allow is None else frozenset(allow)
    errors: list[PluginLoadError] = []
    seen: set[str] = set()
    for ep in _entry_points():
        seen.add(ep.name)
        if allowed is not None and ep.name not in allowed:
            continue
        dist, version = _dist_of(ep)
        where = f"plugin {ep.name!r} from dist {dist or 'unknown'}"
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a plugin's import may raise anything; report, don't die
            errors.append(
                PluginLoadError(
                    f"{where} failed to load: {type(exc).__name__}: {exc}",
                    name=ep.name,
                    dist=dist,
                )
            )
            continue
        factory = getattr(obj, "new_instance", None)
        if callable(factory):
            # One plugin state per manager (see the module docstring).
            try:
                obj = factory()
            except Exception as exc:
                errors.append(
                    PluginLoadError(
                        f"{where}: new_instance() failed: {type(exc).__name__}: {exc}",
                        name=ep.name,
                        dist=dist,
                    )
                )
                continue
        try:
            pm.register(obj, name=ep.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            errors.append(
                PluginLoadError(f"{where} failed to register: {exc}", name=ep.name, dist=dist)
            )
            continue
        try:
            # Per plugin, so a misnamed hook is blamed on the plugin that has it.
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(name=ep.name)
            errors.append(
                PluginLoadError(f"{where} failed validation: {exc}", name=ep.name, dist=dist)
            )
            continue
        if not pm.get_hookcallers(obj):
            # Typically an entry point naming a module whose hooks live on an object in it.
            pm.unregister(name=ep.name)
            errors.append(
                PluginLoadError(
                    f"{where} implements no oms hook: entry point {ep.value!r} should name the "
                    "plugin object (e.g. 'package.module:plugin')",
                    name=ep.name,
                    dist=dist,
                )
            )
            continue
        pm.record_dist(ep.name, dist, version)
        log.debug("loaded %s (version %s)", where, version)
    for missing in sorted((allowed or frozenset()) - seen):
        errors.append(
            PluginLoadError(
                f"plugin {missing!r} is named in {ALLOW_ENV} but no installed plugin has that "
                f"name (installed: {', '.join(sorted(seen)) or 'none'})",
                name=missing,
            )
        )
    pm.load_errors.extend(errors)
    for error in errors:
        log.info("%s", error)
    return errors


def get_plugin_manager(
    *,
    load_entrypoints: bool = True,
    allow: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> OmsPluginManager:
    """A new plugin manager for the ``oms`` hooks, with the installed channel plugins loaded.

    :param load_entrypoints: load the plugins installed under the ``oms`` entry-point group.
        Tests pass ``False`` and register inline plugins themselves.
    :param allow: entry-point names to load; ``None`` means read ``OMS_LOAD_PLUGINS``
        (unset: all installed plugins; set but empty: none).
    :param environ: where to read ``OMS_LOAD_PLUGINS`` (default ``os.environ``).
    :returns: the manager; plugins that failed to load are listed in ``pm.load_errors``.
    :raises pluggy.PluginValidationError: only if a plugin registered outside this function
        left an unknown hook (never for installed plugins, which are reported instead).
    """
    pm = OmsPluginManager()
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        if allow is None:
            allow = parse_allowlist(os.environ if environ is None else environ)
        load_entrypoint_plugins(pm, allow=allow)
    pm.check_pending()
    return pm


def list_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Every registered plugin that implements at least one ``oms`` hook, sorted by name."""
    infos: list[PluginInfo] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # a blocked name
            continue
        callers = pm.get_hookcallers(plugin) or []
        hooks = tuple(sorted(c.name for c in callers))
        if not hooks:
            continue
        dist, version = pm.dist_of(name) if isinstance(pm, OmsPluginManager) else (None, None)
        if version is None:
            attr = getattr(plugin, "__version__", None)
            version = attr if isinstance(attr, str) else None
        infos.append(PluginInfo(name=name, dist=dist, version=version, hooks=hooks))
    return sorted(infos, key=lambda info: info.name)
