"""Plugins and hooks: what a plugin contributes reaches the engines that adopt it."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from deerflow import Engine, Workflow
from deerflow.errors import DeerflowError
from deerflow.runtime import (
    HistoryFolded,
    Hooks,
    Plugin,
    TaskAttempt,
    TaskEnded,
    WorkerStarting,
)

wrapped: contextvars.ContextVar[str | None] = contextvars.ContextVar("wrapped", default=None)


class Recorder(Hooks):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def on_worker_start(self, event: WorkerStarting) -> None:
        self.log.append(f"{self.name}:worker {bool(event.worker)}")

    async def around_task(self, attempt: TaskAttempt) -> Any:
        d = attempt.dispatch
        self.log.append(f"{self.name}:enter {d.task_id}#{d.attempt}")
        token = wrapped.set(f"{wrapped.get() or ''}{self.name}")
        try:
            return await attempt.proceed()
        finally:
            wrapped.reset(token)
            self.log.append(f"{self.name}:leave {d.task_id}#{d.attempt}")

    def on_task_end(self, event: TaskEnded) -> None:
        self.log.append(f"{self.name}:{event.outcome.type} {event.dispatch.task_id}")


class Service:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self) -> None:
        self.log.append("service started")

    async def stop(self) -> None:
        self.log.append("service stopped")


class Recording(Plugin):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def hooks(self) -> list[Hooks]:
        return [Recorder(self.name, self.log)]

    def services(self, engine: Engine) -> list[Service]:
        return [Service(self.log)]


def flaky_workflow(name: str) -> Workflow:
    wf = Workflow(name=name)
    calls = {"n": 0}

    @wf.task(id="flaky", retries=1, retry_delay=0)
    def flaky(context):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first attempt fails")
        return wrapped.get()

    return wf


async def test_hooks_wrap_each_attempt_and_see_its_outcome():
    log: list[str] = []
    wf = flaky_workflow("hooked")
    async with Engine("memory://", [wf], plugins=[Recording("a", log), Recording("b", log)]) as e:
        result = await (await e.start(wf)).result(timeout=30)
    # The body ran inside both hooks, the first adopted outermost.
    assert result.output == "ab"
    attempts = [entry for entry in log if "flaky" in entry]
    assert attempts == [
        "a:enter flaky#1",
        "b:enter flaky#1",
        "b:leave flaky#1",
        "a:leave flaky#1",
        "a:TaskFailed flaky",
        "b:TaskFailed flaky",
        "a:enter flaky#2",
        "b:enter flaky#2",
        "b:leave flaky#2",
        "a:leave flaky#2",
        "a:TaskCompleted flaky",
        "b:TaskCompleted flaky",
    ]
    assert log[:2] == ["a:worker True", "b:worker True"]
    assert log.count("service started") == 2 and log.count("service stopped") == 2


async def test_a_plugin_a_workflow_carries_is_adopted_once_even_when_registered_late():
    log: list[str] = []
    plugin = Recording("p", log)
    first, second = flaky_workflow("carrier_one"), flaky_workflow("carrier_two")
    first.plugins.append(plugin)
    second.plugins.append(plugin)
    async with Engine("memory://") as engine:
        assert "service started" not in log
        handle = await engine.start(first)  # registered now: its plugin's service starts first
        assert log.count("service started") == 1
        assert (await handle.result(timeout=30)).output == "p"
        await (await engine.start(second)).result(timeout=30)
        assert engine.plugins.count(plugin) == 1
    assert log.count("service started") == 1 and log.count("service stopped") == 1


async def test_a_workflow_registered_after_the_start_brings_its_plugin():
    log: list[str] = []
    wf = flaky_workflow("registered_late")
    wf.plugins.append(Recording("r", log))
    async with Engine("memory://") as engine:
        engine.register(wf)
        result = await (await engine.start("registered_late")).result(timeout=30)
        assert result.output == "r"
        assert log.count("service started") == 1
    assert log.count("service stopped") == 1


async def test_services_of_plugins_run_only_where_tasks_run():
    log: list[str] = []
    async with Engine("memory://", plugins=[Recording("c", log)], work=False):
        pass
    assert log == []


def test_an_engine_refuses_what_is_not_a_plugin():
    with pytest.raises(DeerflowError, match=r"is not a deerflow\.runtime\.Plugin"):
        Engine("memory://", plugins=[object()])  # type: ignore[list-item]


class Tuned(Plugin):
    """Reads ``Engine(..., tuning=...)``: its service records what the engine was given."""

    options = frozenset({"tuning"})

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def services(self, engine: Engine) -> list[Service]:
        self.log.append(f"tuning={self.option(engine, 'tuning')}")
        return []


def test_an_option_no_plugin_declares_is_a_type_error_naming_it():
    with pytest.raises(TypeError) as caught:
        Engine("memory://", handlerz=["billing.*"])
    message = str(caught.value)
    assert message.startswith("Engine() got unexpected keyword argument 'handlerz' ")
    assert "'handlers'" in message  # what was probably meant is listed
    with pytest.raises(TypeError, match="arguments 'colour', 'size'"):
        Engine("memory://", size=3, colour="red")


def _plugin_classes() -> list[type[Plugin]]:
    """Every plugin class defined once the package's features and surfaces are imported."""
    import deerflow.web  # noqa: F401  (the dashboard's plugins)

    found: list[type[Plugin]] = []
    pending = [Plugin]
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


def test_every_plugin_class_found_is_checked():
    names = {cls.__name__ for cls in _plugin_classes()}
    # The package's own plugins are among them (a rename would hide one from the check).
    assert {"ChoreographyPlugin", "MatchingPlugin", "PipelinePlugin", "TracingPlugin"} <= names
    assert {"MetricsPlugin", "WebPlugin", "Tuned"} <= names


@pytest.mark.parametrize("cls", _plugin_classes(), ids=lambda cls: cls.__name__)
def test_an_unknown_option_names_each_plugin_and_its_options(cls: type[Plugin]) -> None:
    with pytest.raises(TypeError) as caught:
        typo: dict[str, Any] = {f"{cls.__name__.lower()}_typo": 1}
        Engine("memory://", **typo)
    message = str(caught.value)
    assert f"unexpected keyword argument '{cls.__name__.lower()}_typo' " in message
    for name in sorted(cls.__dict__.get("options", ())):
        assert f"{cls.__name__}: " in message  # the plugin that declares it
        assert repr(name) in message.split(f"{cls.__name__}: ", 1)[1].split(";")[0]
        given: dict[str, Any] = {name: None}
        Engine("memory://", services=False, **given)  # and each declared one is taken


@pytest.mark.parametrize("cls", _plugin_classes(), ids=lambda cls: cls.__name__)
def test_a_plugin_reading_an_option_it_does_not_declare_is_refused(cls: type[Plugin]) -> None:
    plugin = cls.__new__(cls)  # no constructor arguments needed to read an option
    engine = Engine("memory://", services=False)
    with pytest.raises(TypeError) as caught:
        plugin.option(engine, "undeclared_setting")
    assert str(caught.value) == (
        f"plugin {cls.__name__} reads the engine option 'undeclared_setting', "
        f"which {cls.__name__}.options does not declare"
    )
    for name in cls.options:
        assert plugin.option(engine, name, "default") == "default"


def test_a_malformed_option_declaration_fails_where_the_class_is_written():
    with pytest.raises(TypeError, match=r"^plugin Typo: options must be a frozenset"):

        class Typo(Plugin):
            options = "handlers"  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"^plugin Dashed: option 'max-rate' is not a keyword"):

        class Dashed(Plugin):
            options = frozenset({"max-rate"})


async def test_an_option_a_plugin_declares_reaches_its_services():
    log: list[str] = []
    async with Engine("memory://", plugins=[Tuned(log)], tuning="fast"):
        pass
    assert log == ["tuning=fast"]
    # Declared by a plugin class: accepted even before a plugin reading it is adopted.
    async with Engine("memory://", handlers=["none"], choreography=False, tuning="slow"):
        pass


class Follower(Hooks, Plugin):
    """A plugin that is its own hook: records each folded event with the run's status."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def hooks(self) -> list[Hooks]:
        return [self]

    def on_history_event(self, folded: HistoryFolded) -> None:
        self.seen.append((folded.state.run_id, folded.event.type, folded.state.status))


async def test_a_hook_follows_the_history_as_the_run_index_folds_it():
    follower = Follower()
    wf = flaky_workflow("followed")
    async with Engine("memory://", [wf]) as engine:
        engine.add_plugin(follower)
        engine.add_plugin(follower)  # adopted once
        result = await (await engine.start(wf)).result(timeout=30)
        await engine.index.wait(result.run_id, lambda s: s.terminal, 30)
    seen = [(t, status) for rid, t, status in follower.seen if rid == result.run_id]
    assert seen[0] == ("RunRequested", "running")
    assert seen[-1] == ("RunCompleted", "completed")
    types = [t for t, _ in seen]
    assert types.count("TaskFailed") == 1 and types.count("TaskCompleted") == 1
    assert types.count("RunRequested") == 1  # each event once, as the fold applied it


class Broken(Hooks, Plugin):
    def hooks(self) -> list[Hooks]:
        return [self]

    def on_history_event(self, folded: HistoryFolded) -> None:
        raise RuntimeError("broken hook")


async def test_a_history_hook_that_raises_stops_neither_the_index_nor_other_hooks(caplog):
    follower = Follower()
    wf = flaky_workflow("broken_hook")
    async with Engine("memory://", [wf], plugins=[Broken(), follower]) as engine:
        result = await (await engine.start(wf)).result(timeout=30)
        state = await engine.index.wait(result.run_id, lambda s: s.terminal, 30)
    assert state is not None and state.status == "completed"
    assert ("RunCompleted", "completed") in [(t, st) for _, t, st in follower.seen]
    assert "broken hook" in caplog.text
