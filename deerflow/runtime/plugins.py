"""Plugins: what a feature or an integration adds to the engines that serve it.

A plugin contributes :class:`~deerflow.runtime.hooks.Hooks` and the services an engine starts
and stops with itself (the choreography handlers, served pipelines, ...). An engine adopts the
plugins given to it (``Engine(plugins=[...])``) and those its workflows carry
(``workflow.plugins``), each plugin object once, in that order. A feature whose workflows need
a service makes them carry its plugin, so nothing registers itself at import time.

Settings for plugins' services are keywords of the engine (``Engine(..., handlers=[...])``,
read as ``engine.options``): each plugin class declares the names it reads in
:attr:`Plugin.options`, and an engine refuses a keyword no plugin class declares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from deerflow.runtime.hooks import Hooks

if TYPE_CHECKING:
    from deerflow.runtime._engine import Engine


class Service(Protocol):
    """Something an engine starts and stops with itself (trigger consumers, event handlers)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Plugin:
    """Base class of plugins: no hooks, no services; override what you contribute."""

    #: the ``Engine(**options)`` keywords this plugin's services read (``engine.options``)
    options: ClassVar[frozenset[str]] = frozenset()

    def hooks(self) -> Sequence[Hooks]:
        """Hooks for the engine's worker (called once, when the engine adopts the plugin)."""
        return ()

    def services(self, engine: Engine) -> Iterable[Service]:
        """Services ``engine`` runs (only engines that run tasks, with ``services=True``).

        Called when the engine starts, or when it adopts the plugin later; the services see
        the engine's registry and options (``engine.options``).
        """
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def declared_options() -> frozenset[str]:
    """The engine options every plugin class defined in this process declares.

    Classes, not adopted plugins: a workflow registered after the engine was built may bring
    the plugin that reads an option given to the engine.
    """
    names: set[str] = set()
    pending: list[type[Plugin]] = [Plugin]
    while pending:
        cls = pending.pop()
        names.update(cls.options)
        pending.extend(cls.__subclasses__())
    return frozenset(names)


def check_options(owner: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`TypeError` naming each of ``options`` no plugin class declares."""
    accepted = declared_options()
    unknown = sorted(name for name in options if name not in accepted)
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        plural = "s" if len(unknown) > 1 else ""
        known = ", ".join(repr(n) for n in sorted(accepted)) or "none"
        raise TypeError(
            f"{owner}() got unexpected keyword argument{plural} {names} (plugin options: {known})"
        )
