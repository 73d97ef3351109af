"""Plugins: what a feature or an integration adds to the engines that serve it.

A plugin contributes :class:`~deerflow.runtime.hooks.Hooks`, the services an engine starts
and stops with itself (the choreography handlers, served pipelines, ...) and the fold
extensions of the history events its feature adds (:meth:`Plugin.folds`). An engine adopts the
plugins given to it (``Engine(plugins=[...])``) and those its workflows carry
(``workflow.plugins``), each plugin object once, in that order. A feature whose workflows need
a service makes them carry its plugin, so nothing registers itself at import time. Engines
also adopt the default plugins (:func:`default_plugins`): the package's features whose
histories any process may read without their definitions (a CLI, the run index), declared in
one list (``deerflow.workflow.DEFAULT_PLUGINS``).

Settings for plugins' services are keywords of the engine (``Engine(..., handlers=[...])``,
read as ``engine.options``): each plugin class declares the names it reads in
:attr:`Plugin.options` and reads them with :meth:`Plugin.option`. An engine refuses a keyword
no plugin class declares, a plugin reading a name it did not declare is refused too, and a
class whose declaration is malformed fails when it is defined: each error names the plugin
and the option.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from deerflow.core.state import FoldExtension, register_fold
from deerflow.runtime.hooks import Hooks

if TYPE_CHECKING:
    from deerflow.runtime._engine import Engine


class Service(Protocol):
    """Something an engine starts and stops with itself (trigger consumers, event handlers)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Plugin:
    """Base class of plugins: no hooks, no services; override what you contribute."""

    #: the ``Engine(**options)`` keywords this plugin's services read (:meth:`option`)
    options: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Checked where the class is written: a bare string would declare its letters, and
        # a name that is not a keyword could never be given.
        options: Any = cls.__dict__.get("options", frozenset())
        if not isinstance(options, frozenset):
            raise TypeError(
                f"plugin {cls.__name__}: options must be a frozenset of keyword names, "
                f"not {type(options).__name__}"
            )
        for name in sorted(options, key=str):
            if not isinstance(name, str) or not name.isidentifier():
                raise TypeError(f"plugin {cls.__name__}: option {name!r} is not a keyword name")

    def option(self, engine: Engine, name: str, default: Any = None) -> Any:
        """The engine option ``name`` (``Engine(..., name=value)``), or ``default``.

        Raises:
            TypeError: ``name`` is not among this plugin class's :attr:`options` (the engine
                would have refused it as a keyword, so it could never be set).
        """
        if name not in type(self).options:
            raise TypeError(
                f"plugin {type(self).__name__} reads the engine option {name!r}, which "
                f"{type(self).__name__}.options does not declare"
            )
        return engine.options.get(name, default)

    def hooks(self) -> Sequence[Hooks]:
        """Hooks for the engine's worker (called once, when the engine adopts the plugin)."""
        return ()

    def folds(self) -> Sequence[FoldExtension]:
        """Fold extensions of the history events the plugin's feature adds: registered when
        an engine adopts it (or :func:`use_by_default` makes it a default)."""
        return ()

    def services(self, engine: Engine) -> Iterable[Service]:
        """Services ``engine`` runs (only engines that run tasks, with ``services=True``).

        Called when the engine starts, or when it adopts the plugin later; the services see
        the engine's registry and options (``engine.options``).
        """
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FoldsPlugin(Plugin):
    """A plugin that only contributes fold extensions (a feature's history events)."""

    def __init__(self, *extensions: FoldExtension) -> None:
        self._folds = tuple(extensions)

    def folds(self) -> Sequence[FoldExtension]:
        """The extensions given."""
        return self._folds

    def __repr__(self) -> str:
        return f"FoldsPlugin({', '.join(repr(e.key) for e in self._folds)})"


#: plugins every engine adopts (bounded by the code that declares them)
_DEFAULTS: list[Plugin] = []


def adopt_folds(plugin: Plugin) -> None:
    """Fold the history events of ``plugin``'s feature from now on (again: a no-op)."""
    for extension in plugin.folds():
        register_fold(extension)


def use_by_default(*plugins: Plugin) -> None:
    """Make ``plugins`` defaults: their folds apply from now on, and every engine adopts them.

    The package's own list is ``deerflow.workflow.DEFAULT_PLUGINS``, made default when
    ``deerflow`` is imported; a plugin already a default is not added twice.
    """
    for plugin in plugins:
        if not isinstance(plugin, Plugin):
            raise TypeError(f"{plugin!r} is not a deerflow.runtime.Plugin")
        adopt_folds(plugin)
        if not any(plugin is p for p in _DEFAULTS):
            _DEFAULTS.append(plugin)


def default_plugins() -> tuple[Plugin, ...]:
    """The plugins every engine adopts before its own (see :func:`use_by_default`)."""
    return tuple(_DEFAULTS)


def option_owners() -> dict[str, list[str]]:
    """The engine options the plugin classes defined in this process declare: each name ->
    the names of the classes declaring it.

    Classes, not adopted plugins: a workflow registered after the engine was built may bring
    the plugin that reads an option given to the engine.
    """
    owners: dict[str, list[str]] = {}
    pending: list[type[Plugin]] = [Plugin]
    seen: set[type[Plugin]] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:  # a class with two plugin bases is found twice
            continue
        seen.add(cls)
        for name in cls.__dict__.get("options", ()):
            owners.setdefault(name, []).append(cls.__name__)
        pending.extend(cls.__subclasses__())
    return owners


def declared_options() -> frozenset[str]:
    """The engine options every plugin class defined in this process declares."""
    return frozenset(option_owners())


def check_options(owner: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`TypeError` naming each of ``options`` no plugin class declares, and the
    options each plugin class does declare."""
    owners = option_owners()
    unknown = sorted(name for name in options if name not in owners)
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        plural = "s" if len(unknown) > 1 else ""
        by_plugin: dict[str, list[str]] = {}
        for name, classes in sorted(owners.items()):
            for cls in classes:
                by_plugin.setdefault(cls, []).append(repr(name))
        known = "; ".join(f"{cls}: {', '.join(ns)}" for cls, ns in sorted(by_plugin.items()))
        raise TypeError(
            f"{owner}() got unexpected keyword argument{plural} {names} "
            f"(plugin options: {known or 'none'})"
        )
