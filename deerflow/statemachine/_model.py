"""The declarative state-machine DSL, validated when the class is defined."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from deerflow.errors import DefinitionError


class State:
    """A state of a :class:`StateMachine`; its name is the attribute it is assigned to."""

    def __init__(
        self,
        *,
        initial: bool = False,
        final: bool = False,
        name: str | None = None,
        description: str = "",
    ) -> None:
        self.initial = initial
        self.final = final
        self.name = name or ""
        self.description = description

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __repr__(self) -> str:
        flags = "".join([" initial" if self.initial else "", " final" if self.final else ""])
        return f"State({self.name!r}{flags})"


class Transition:
    """A named move from one or more source states to a target state.

    Args:
        source: a state or a list of states the transition may start from.
        target: the state it leads to.
        guard: optional ``guard(self, context) -> bool`` (or a method name); a false guard
            refuses the transition and the instance stays where it was.
    """

    def __init__(
        self,
        *,
        source: State | Iterable[State],
        target: State,
        guard: Callable[..., Any] | str | None = None,
        name: str | None = None,
    ) -> None:
        self.sources = (source,) if isinstance(source, State) else tuple(source)
        self.target = target
        self.guard = guard
        self.name = name or ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __repr__(self) -> str:
        sources = ", ".join(s.name for s in self.sources)
        return f"Transition({self.name!r}: {sources} -> {self.target.name})"


def on_transition(transition: Transition) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the decorated method ``(self, context)`` when ``transition`` happens."""
    return _hook("transition", transition)


def on_enter(state: State) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the decorated method ``(self, context)`` when the machine enters ``state``."""
    return _hook("enter", state)


def on_exit(state: State) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the decorated method ``(self, context)`` when the machine leaves ``state``."""
    return _hook("exit", state)


def _hook(
    kind: str, target: State | Transition
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        hooks: list[tuple[str, State | Transition]] = list(getattr(fn, "__deerflow_hooks__", []))
        hooks.append((kind, target))
        fn.__deerflow_hooks__ = hooks  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class MachineSpec:
    """What a state-machine class declares, checked by :func:`build_spec`."""

    name: str
    states: dict[str, State]
    transitions: dict[str, Transition]
    handlers: dict[str, list[str]] = field(default_factory=dict)
    enter: dict[str, list[str]] = field(default_factory=dict)
    exit: dict[str, list[str]] = field(default_factory=dict)

    @property
    def initial(self) -> str:
        """The initial state's name."""
        return next(n for n, s in self.states.items() if s.initial)

    def is_final(self, state: str) -> bool:
        """Whether ``state`` ends the instance."""
        return self.states[state].final

    def allowed(self, state: str) -> list[str]:
        """Transitions that may start from ``state``."""
        return [n for n, t in self.transitions.items() if any(s.name == state for s in t.sources)]

    def refusal(self, transition: str, state: str | None) -> str | None:
        """Why ``transition`` cannot happen in ``state`` (``None`` if it can)."""
        if transition not in self.transitions:
            return f"{self.name} has no transition {transition!r}"
        # An instance not yet in a state has started and enters its initial state before
        # its owner applies any request, in order: a request sent right after start is
        # checked against the state it will meet.
        state = self.initial if state is None else state
        if state not in {s.name for s in self.transitions[transition].sources}:
            allowed = ", ".join(self.allowed(state)) or "none"
            return (
                f"transition {transition!r} is not allowed from state {state!r} "
                f"(allowed: {allowed})"
            )
        return None

    def needs_task(self, transition: str) -> bool:
        """Whether user code runs for ``transition`` (handler, guard or hooks)."""
        t = self.transitions[transition]
        return bool(
            self.handlers.get(transition)
            or t.guard
            or self.enter.get(t.target.name)
            or any(self.exit.get(s.name) for s in t.sources)
        )

    def target(self, transition: str) -> str:
        """The state ``transition`` leads to."""
        return self.transitions[transition].target.name

    def fingerprint(self) -> str:
        """The machine's shape, for the workflow fingerprint."""
        return ";".join(
            f"{n}:{','.join(s.name for s in t.sources)}>{t.target.name}"
            for n, t in sorted(self.transitions.items())
        )


def build_spec(cls: type) -> MachineSpec:
    """Collect and validate the states, transitions and hooks of ``cls``."""
    states: dict[str, State] = {}
    transitions: dict[str, Transition] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, State):
                states[value.name or name] = value
            elif isinstance(value, Transition):
                transitions[value.name or name] = value
    spec = MachineSpec(cls.__name__, states, transitions)
    _collect_hooks(cls, spec)
    _validate(spec)
    return spec


def _collect_hooks(cls: type, spec: MachineSpec) -> None:
    known_transitions = {id(t): n for n, t in spec.transitions.items()}
    known_states = {id(s): n for n, s in spec.states.items()}
    for attr in dir(cls):
        fn = getattr(cls, attr, None)
        for kind, target in getattr(fn, "__deerflow_hooks__", []):
            table = known_transitions if kind == "transition" else known_states
            name = table.get(id(target))
            if name is None:
                raise DefinitionError(
                    f"state machine {cls.__name__}: {attr} handles "
                    f"{target!r}, which is not part of this machine"
                )
            book = {"transition": spec.handlers, "enter": spec.enter, "exit": spec.exit}[kind]
            book.setdefault(name, []).append(attr)


def _validate(spec: MachineSpec) -> None:
    where = f"state machine {spec.name}"
    initial = [n for n, s in spec.states.items() if s.initial]
    if len(initial) != 1:
        raise DefinitionError(f"{where}: needs exactly one initial state, has {initial or 'none'}")
    for name, t in spec.transitions.items():
        _check_transition(where, spec, name, t)
    unreachable = sorted(set(spec.states) - _reachable(spec, initial[0]))
    if unreachable:
        raise DefinitionError(f"{where}: unreachable states {unreachable}")


def _check_transition(where: str, spec: MachineSpec, name: str, t: Transition) -> None:
    for source in t.sources:
        if source.name not in spec.states:
            raise DefinitionError(f"{where}: transition {name!r} starts from unknown state")
        if source.final:
            raise DefinitionError(
                f"{where}: transition {name!r} leaves final state {source.name!r}"
            )
    if t.target.name not in spec.states:
        raise DefinitionError(f"{where}: transition {name!r} leads to an unknown state")


def _reachable(spec: MachineSpec, start: str) -> set[str]:
    reachable = {start}
    frontier = [start]
    while frontier:
        current = frontier.pop()
        for t in spec.transitions.values():
            if any(s.name == current for s in t.sources) and t.target.name not in reachable:
                reachable.add(t.target.name)
                frontier.append(t.target.name)
    return reachable
