"""``deerflow serve`` and ``deerflow triggers``: the long-running trigger runtime.

``deerflow serve app.py`` loads every workflow of the file, starts an engine (orchestrator and
worker) on the chosen store, a source for each trigger and the webhook gateway, and runs until
SIGINT/SIGTERM. Then it stops in the order that loses nothing acknowledged: the gateway first
(requests in flight are answered once their run is durable), then the Kafka and S3 sources
(the batch in hand is finished and acknowledged, or left unacknowledged to be redelivered),
then the worker drains and the engine closes the store.

``deerflow triggers replay NAME --from-offset N | --since TIME`` re-delivers a Kafka trigger's
past messages; the original run ids are kept (messages that already started a run start
nothing) unless ``--new-runs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from deerflow._startup import Startup, stop_on_signals
from deerflow._userfile import load_module_workflows
from deerflow.engine import Engine, Workflow
from deerflow.errors import ConnectorError, DeerflowError, EventStoreError
from deerflow.events import KafkaEvent, S3Event, Schedule, trigger_name
from deerflow.logs import LEVELS, configure_logging

if TYPE_CHECKING:
    from deerflow.connectors import WebhookGateway

T = TypeVar("T")
log = logging.getLogger("deerflow.serve")

triggers_app = typer.Typer(help="Inspect and replay triggers.", no_args_is_help=True)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Event-log URL (memory://, "
        "sqlite:///file.db, kafka://host:9092); default $DEERFLOW_STORE or "
        "sqlite:///deerflow.db",
    ),
]
AppOpt = Annotated[
    str, typer.Option("--app", envvar="DEERFLOW_APP", help="The FILE.py defining the workflows.")
]
LogLevelOpt = Annotated[
    str,
    typer.Option(
        "--log-level",
        help=f"One of {', '.join(LEVELS)}; the libraries' own lines (aiokafka...) only at debug.",
    ),
]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(main())
    except DeerflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


async def serve(
    workflows: list[Workflow],
    *,
    store: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: str | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Serve ``workflows`` until ``stop`` is set (default: until SIGINT/SIGTERM).

    The HTTP port answers as soon as the store is open: 503 "starting" (naming what it waits
    for) until every consumer group has joined, all at once. ``on_ready`` gets the gateway's
    URL once everything is started; ``say`` gets the lines a person reads (default: logged).
    """
    from deerflow.connectors import WebhookGateway, load_config, sources_for
    from deerflow.web import mount  # the dashboard, /api/ and /metrics on the same port

    say = say or log.info
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    settings = load_config(config)
    engine = Engine(store, workflows)
    gateway = WebhookGateway(engine, host=host, port=port, config=settings)
    startup = Startup(gateway.api_keys)
    gateway.app.middlewares.append(startup.middleware)
    mount(gateway.app, engine, api_keys=gateway.api_keys, config=settings)
    sources = sources_for(engine, workflows, gateway=gateway)  # bad trigger config fails here
    try:
        await _open(engine)
        await _listen(gateway)
        waiting = [startup.track(s, s.describe()) for s in sources]
        startup.wait_for(_engine_groups(engine))
        say(f"deerflow serve: starting on {gateway.url}; waiting for {', '.join(startup.waiting)}")
        if await _started_unless_stopped(engine.add_services(waiting), stop):
            took = startup.finish()
            if on_ready is not None:
                on_ready(gateway.url)
            for line in _summary(workflows, engine, gateway, took):
                say(line)
            await stop.wait()
        began = time.monotonic()
        say(_stopping_line(workflows))
    finally:
        # The gateway first: no new requests while the rest drains.
        await gateway.stop()
        await engine.stop()
    say(f"stopped in {time.monotonic() - began:.1f}s")


async def _started_unless_stopped(starting: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Await ``starting`` unless ``stop`` is set first (then cancel it); whether it finished."""
    start = asyncio.ensure_future(starting)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not start.done():
        start.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await start
        return False
    await start  # its error, if it failed
    return True


async def _listen(gateway: WebhookGateway) -> None:
    try:
        await gateway.start()
    except OSError as exc:  # the port is taken, or the address is not this host's
        raise ConnectorError(
            f"cannot listen on {gateway.host}:{gateway.port} "
            f"({os.strerror(exc.errno).lower() if exc.errno else exc}): "
            "pick another --port / --host",
            retriable=False,
        ) from exc


async def _open(engine: Engine) -> None:
    try:
        await engine.open()
    except EventStoreError as exc:
        fix = (
            "start it, or point --store / $DEERFLOW_STORE at a reachable store"
            if engine.log.url.startswith("kafka")
            else "check --store / $DEERFLOW_STORE"
        )
        raise EventStoreError(f"{exc}; {fix}", retriable=exc.retriable) from exc


def _engine_groups(engine: Engine) -> str:
    topics = engine.topics
    return f"the engine's groups {topics.orchestrator_group} and {topics.worker_group}"


def _summary(
    workflows: list[Workflow], engine: Engine, gateway: WebhookGateway, took: float
) -> list[str]:
    """The lines ``deerflow serve`` prints once it is ready."""
    triggers = sum(len(wf.triggers) for wf in workflows)
    lines = [
        f"serving {_count(len(workflows), 'workflow')}, {_count(triggers, 'trigger')} "
        f"on {engine.log.url} (started in {took:.1f}s)",
        f"dashboard: {gateway.url}/ui/  API: {gateway.url}/api/  metrics: {gateway.url}/metrics",
    ]
    lines += [f"webhook: {r.trigger.method} {gateway.url}{r.trigger.path}" for r in gateway.routes]
    lines += [
        f"schedule: {trigger_name(wf.name, t)} {t.when}"
        for wf in workflows
        for t in wf.triggers
        if isinstance(t, Schedule)
    ]
    return lines


def _stopping_line(workflows: list[Workflow]) -> str:
    polls = [
        t.wait_seconds
        for wf in workflows
        for t in wf.triggers
        if isinstance(t, S3Event) and t.mode == "notification"
    ]
    # A receive in flight is not cut short: its messages would stay hidden until the
    # visibility timeout. Say why the stop may take that long.
    wait = f" (an SQS long poll in flight ends within {max(polls)}s)" if polls else ""
    return f"stopping: draining triggers and tasks{wait}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def serve_command(
    target: Annotated[str, typer.Argument(help="FILE.py defining the workflows")],
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Address of the webhook gateway.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the webhook gateway (0: any).")] = 8000,
    config: Annotated[
        str | None,
        typer.Option(help="Configuration file (TOML); default $DEERFLOW_CONFIG or ./deerflow.toml"),
    ] = None,
    log_level: LogLevelOpt = "info",
) -> None:
    """Run every workflow of FILE with its triggers until SIGINT/SIGTERM, then drain."""
    if log_level.lower() not in LEVELS:
        raise typer.BadParameter(f"use one of {', '.join(LEVELS)}", param_hint="--log-level")
    configure_logging(level=log_level)
    workflows, _ = _load(target)

    def say(line: str) -> None:
        # On stdout, for people and for scripts: the "listening on" line means ready.
        print(line, flush=True)

    def ready(url: str) -> None:
        say(f"deerflow serve: listening on {url}")

    _run(
        lambda: serve(
            workflows, store=store, host=host, port=port, config=config, on_ready=ready, say=say
        )
    )


def _load(target: str) -> tuple[list[Workflow], Workflow | None]:
    try:
        return load_module_workflows(target)
    except DeerflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def parse_since(text: str, now: datetime | None = None) -> int:
    """``--since``: an ISO-8601 time (UTC if no zone) or ``15m``/``2h``/``1d`` ago, in ms."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match:
        moment = now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise typer.BadParameter(f"not a time or duration: {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@triggers_app.command("list")
def list_command(app_file: AppOpt = "app.py") -> None:
    """List the triggers of the app's workflows with their names."""
    workflows, _ = _load(app_file)
    for wf in workflows:
        for trigger in wf.triggers:
            typer.echo(f"{trigger_name(wf.name, trigger)}\t{wf.name}\t{trigger!r}")


@triggers_app.command("replay")
def replay_command(
    name: Annotated[str, typer.Argument(help="Trigger name (see `deerflow triggers list`).")],
    app_file: AppOpt = "app.py",
    store: StoreOpt = None,
    from_offset: Annotated[
        int | None,
        typer.Option("--from-offset", help="Re-deliver from this offset of every partition."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Re-deliver messages since this time (ISO-8601, or 15m / 2h / 1d ago)."
        ),
    ] = None,
    new_runs: Annotated[
        bool,
        typer.Option(
            "--new-runs", help="Start new runs even for messages that already started one."
        ),
    ] = False,
) -> None:
    """Re-deliver a Kafka trigger's past messages (deduplicated unless --new-runs)."""
    if (from_offset is None) == (since is None):
        raise typer.BadParameter("give exactly one of --from-offset and --since")
    since_ms = parse_since(since) if since is not None else None
    configure_logging()  # what each dead-lettered message was, one line each
    workflows, _ = _load(app_file)

    async def main() -> int:
        return await replay_trigger(
            workflows,
            name,
            store=store,
            from_offset=from_offset or 0,
            since_ms=since_ms,
            new_runs=new_runs,
        )

    count = _run(main)
    typer.echo(
        f"re-delivered {count} messages of {name}"
        + ("" if new_runs else " (messages that already started a run start nothing)")
    )


async def replay_trigger(
    workflows: list[Workflow],
    name: str,
    *,
    store: str | None,
    from_offset: int = 0,
    since_ms: int | None = None,
    new_runs: bool = False,
) -> int:
    """Replay Kafka trigger ``name`` on ``store``; returns how many runs were requested."""
    from deerflow.connectors import KafkaRoute, KafkaTriggerSource, find_trigger
    from deerflow.connectors.kafka import (
        new_replay_nonce,
        replay,
        source_log_for,
        source_url_for,
    )
    from deerflow.errors import ConnectorError

    wf, trigger = find_trigger(workflows, name)
    if not isinstance(trigger, KafkaEvent):
        raise ConnectorError(
            f"trigger {name!r} is not a Kafka trigger; only those replay", retriable=False
        )
    async with Engine(store, workflows, orchestrate=False, work=False) as engine:
        source_log, owned = source_log_for(engine, source_url_for(engine, trigger))
        if owned:
            await source_log.start()
        try:
            source = KafkaTriggerSource(
                engine,
                trigger.consumer_group,
                {trigger.topic: KafkaRoute(wf.name, trigger, name)},
                log=source_log,
                replay_nonce=new_replay_nonce() if new_runs else None,
            )
            return await replay(source, from_offset=from_offset, since_ms=since_ms)
        finally:
            if owned:
                await source_log.stop()
