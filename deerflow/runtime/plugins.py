"""Plugins: what a feature or an integration adds to the engines that serve it.

A plugin contributes :class:`~deerflow.runtime.hooks.Hooks` and the services an engine starts
and stops with itself (the choreography handlers, served pipelines, ...). An engine adopts the
plugins given to it (``Engine(plugins=[...])``) and those its workflows carry
(``workflow.plugins``), each plugin object once, in that order. A feature whose workflows need
a service makes them carry its plugin, so nothing registers itself at import time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from deerflow.runtime.hooks import Hooks

if TYPE_CHECKING:
    from deerflow.runtime._engine import Engine


class Service(Protocol):
    """Something an engine starts and stops with itself (trigger consumers, event handlers)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Plugin:
    """Base class of plugins: no hooks, no services; override what you contribute."""

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
