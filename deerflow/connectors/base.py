"""The narrow base every trigger source builds on.

A trigger source reads events from outside (a Kafka topic, an SQS queue, HTTP requests), turns
each into a :class:`RunRequest` (or a :class:`DeadLetter`, or nothing), makes those durable in
the event log and only then acknowledges the source. That order is the whole guarantee:
at-least-once in, and because the run id is derived from the event's identity
(:func:`run_id_for`), the engine's idempotent start turns a redelivery into the same run.
:meth:`TriggerSource.deliver` is that template; subclasses supply ``interpret`` and
``acknowledge``. A source that reads in a loop (Kafka, SQS, bucket listings) is a
:class:`PollingSource`: its start and stop are :class:`~deerflow.runtime.BackgroundService`'s.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import os
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

import deerflow._codec as _codec
from deerflow._lifecycle import Lifecycle
from deerflow.connectors._letters import LetterIds, letter_id, letter_message, whose
from deerflow.core import RunState
from deerflow.core import history as h
from deerflow.errors import ConnectorError, DeerflowError, RunNotFound, TransitionNotAllowed
from deerflow.eventstore import StoredEvent
from deerflow.eventstore.integration import derived_id, encode_unit
from deerflow.log.base import Headers, Message
from deerflow.payloads import beyond_limit, size_text
from deerflow.runtime import BackgroundService, Engine

log = logging.getLogger("deerflow.connectors")

T = TypeVar("T")
DEFAULT_MAX_RUNNING = 10_000


def run_id_for(workflow: str, source: str, identity: str | None) -> str:
    """A run id for an event: ``<workflow>-<source>-<hash of the identity>``.

    The same identity always gives the same id (so a redelivered event is the same run);
    ``identity=None`` gives a fresh random id. The id is URL-safe: it appears in status URLs.
    """
    if identity is None:
        return f"{workflow}-{source}-{uuid.uuid4().hex[:24]}"
    # surrogateescape: HTTP headers that are not UTF-8 arrive as lone surrogates; their bytes
    # are still an identity.
    text = f"{workflow}\x00{source}\x00{identity}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{workflow}-{source}-{digest[:24]}"


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A run to request: which workflow, under which id, for which trigger event."""

    workflow: str
    run_id: str
    event: BaseModel
    input: Any = None
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that cannot start a run, with the reason, for the dead-letter topic."""

    reason: str
    source: str
    details: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class EventRequest:
    """An event to append to the deployment's events topic, for the runs waiting on it.

    What a ``wait_for_event(source=WebhookEvent(...) | S3Event(...))`` source receives: one
    domain event per waited-for type, whose id derives from ``identity`` (the delivery id, the
    S3 object's version or sequencer), so a redelivery is the same event and resumes nothing
    more.
    """

    types: tuple[str, ...]
    identity: str
    data: Any
    source: str

    def events(self) -> list[StoredEvent]:
        """The domain events to append, one per type (their ids derive from the identity)."""
        return [
            StoredEvent(
                id=derived_id(f"{self.source}\x00{self.identity}", 0),
                type=event_type,
                data=self.data,
                stream=self.source,
                source=self.source,
            )
            for event_type in self.types
        ]


Action = RunRequest | DeadLetter | EventRequest


def unstorable(request: RunRequest) -> str | None:
    """Why ``request``'s trigger event cannot be stored in its ``RunRequested``, or ``None``.

    JSON decoders accept deeper nesting than deerflow stores (orjson reads 1,024 levels; user
    data is limited to :data:`deerflow._codec.MAX_DEPTH`), so without this check one deeply
    nested message would fail its batch forever, or start a run that can never move.
    """
    try:
        _codec.bounded_json_value(request.event.model_dump(mode="json"))
        _codec.bounded_json_value(request.input)
    except (TypeError, ValueError) as exc:  # pydantic raises ValueError past ~255 levels
        return f"trigger event cannot be stored: {exc}"
    return None


def too_large(engine: Engine, request: RunRequest | EventRequest) -> str | None:
    """Why ``request``'s trigger event (or, for an :class:`EventRequest`, each event it
    appends) is too large for ``engine``'s log, or ``None``.

    The limit is the log's ``max_value_bytes``: a record on Kafka without a blob store, a
    value in the blob store with one. Without this check such an event would fail its run
    request on every delivery, the source retrying it forever.
    """
    limit = engine.log.max_value_bytes
    if limit is None:
        return None
    if isinstance(request, EventRequest):
        size = max(len(encode_unit([event])[0]) for event in request.events())
        what = f"the event from {request.source}"
    else:
        size = len(request.event.model_dump_json()) + len(_codec.dumps(request.input))
        what = f"the trigger event for run {request.run_id!r} of workflow {request.workflow!r}"
    if size <= limit:
        return None
    return f"{what} is {size_text(size)}, {beyond_limit(limit)}"


class EngineLoad:
    """How many runs are running, from the engine's run index (shared per engine).

    Sources stop taking input while :meth:`saturated`: Kafka pauses partitions, SQS stops
    receiving, the gateway answers 503. Counts every run in the store, not just this process's.
    """

    _by_engine: weakref.WeakKeyDictionary[Engine, EngineLoad] = weakref.WeakKeyDictionary()

    def __init__(self, engine: Engine) -> None:
        self.running: set[str] = set()
        self._engine = engine
        self._started = False

    @classmethod
    async def of(cls, engine: Engine) -> EngineLoad:
        """The engine's gauge, following its run index from now on."""
        gauge = cls._by_engine.get(engine)
        if gauge is None:
            gauge = cls._by_engine[engine] = cls(engine)
        if not gauge._started:
            gauge._started = True
            await engine.index.start()
            gauge.running = await engine.index.running_ids()
            engine.index.add_listener(gauge._on_change)
        return gauge

    def _on_change(self, state: RunState, event: h.HistoryEvent) -> None:
        if state.terminal:
            self.running.discard(state.run_id)
        else:
            self.running.add(state.run_id)

    def requested(self, run_ids: Iterable[str]) -> None:
        """Count runs a source just requested, before the run index reads them back.

        Without this a source polling faster than the index follows the history would take
        batch after batch while the gauge still looks empty. A run the index already saw end
        is not counted (it would never be discounted).
        """
        for run_id in run_ids:
            state = self._engine.index.runs.get(run_id)
            if state is None or not state.terminal:
                self.running.add(run_id)

    def saturated(self, limit: int) -> bool:
        """Whether at least ``limit`` runs are running."""
        return len(self.running) >= limit


def max_running_default() -> int:
    """``DEERFLOW_MAX_RUNNING_RUNS``, else 10,000: above it sources stop taking input."""
    return int(os.environ.get("DEERFLOW_MAX_RUNNING_RUNS") or DEFAULT_MAX_RUNNING)


class TriggerSource(Lifecycle, Generic[T]):
    """A running trigger: reads a source, requests runs durably, then acknowledges.

    Args:
        engine: the engine runs are requested on (and whose log holds the dead letters).
        name: the trigger's name, in logs and dead letters.
        max_running: stop taking input while this many runs are running.
    """

    source: str = "custom"

    def __init__(self, engine: Engine, name: str, *, max_running: int | None = None) -> None:
        self.engine = engine
        self.name = name
        self.max_running = max_running or max_running_default()
        self.load: EngineLoad | None = None
        self.stopping = asyncio.Event()
        self.requested = 0
        self.dead_lettered = 0
        #: events appended for waiting runs (``wait_for_event(source=...)``)
        self.published = 0
        #: the event types this source's input becomes, for runs waiting on it (none: its
        #: input starts runs)
        self.events: tuple[str, ...] = ()

    # -- lifecycle ------------------------------------------------------------------------------

    def describe(self) -> str:
        """What this source connects to, as a person reads it (e.g. while it starts)."""
        return f"trigger {self.name}"

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect to the source and start taking input; idempotent."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop taking input, finish and acknowledge what is in hand; idempotent."""

    async def _attach_load(self) -> EngineLoad:
        if self.load is None:
            self.load = await EngineLoad.of(self.engine)
        return self.load

    def saturated(self) -> bool:
        """Whether the engine has too many running runs to take more input now.

        A source of events for waits never is: its input starts nothing, and the runs it
        resumes count among the running ones (holding it back could stall them all).
        """
        return not self.events and self.load is not None and self.load.saturated(self.max_running)

    # -- the template -------------------------------------------------------------------------

    async def prepare(self, items: Sequence[T]) -> None:
        """Look at a whole batch before :meth:`interpret` (default: nothing to do)."""

    def interpret(self, item: T) -> Sequence[Action]:
        """What one input item asks for: runs to request, dead letters, or nothing."""
        raise NotImplementedError

    async def acknowledge(self, items: Sequence[T]) -> None:
        """Tell the source ``items`` are done (commit offsets, delete messages)."""
        raise NotImplementedError

    async def deliver(self, items: Sequence[T]) -> None:
        """Request the runs ``items`` ask for durably, then acknowledge them."""
        await self.prepare(items)
        actions = [action for item in items for action in self.interpret(item)]
        await self.submit(actions)
        await self.acknowledge(items)

    async def submit(
        self,
        actions: Iterable[Action],
        *,
        give_up_after: float | None = None,
    ) -> list[str]:
        """Make every action durable; return the run ids requested.

        Failed appends are retried with backoff until they succeed, the source is stopping, or
        ``give_up_after`` seconds have passed (then :class:`ConnectorError`, nothing acked).
        """
        actions = list(actions)
        requests = [a for a in actions if isinstance(a, RunRequest)]
        events = [e for a in actions if isinstance(a, EventRequest) for e in a.events()]
        letters = {
            letter_id(self.name, a.key): a for a in actions if isinstance(a, DeadLetter)
        }  # the same input twice in one batch is one letter
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        delay = 0.1
        while True:
            try:
                await self._write_letters(letters)
                await self._append_events(events)
                await asyncio.gather(*(self._request(r) for r in requests))
            except DeerflowError as exc:
                if (
                    not exc.retriable
                    or self.stopping.is_set()
                    or (deadline is not None and time.monotonic() + delay > deadline)
                ):
                    raise ConnectorError(
                        f"trigger {self.name}: {exc}", retriable=exc.retriable
                    ) from exc
                log.warning(
                    "trigger %s: requesting runs failed (%s); retrying in %.1fs",
                    self.name,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.requested += len(requests)
            if self.load is not None:
                self.load.requested(r.run_id for r in requests)
            return [r.run_id for r in requests]

    def request_for(
        self, workflow: str, identity: str, event: BaseModel, origin: str
    ) -> RunRequest | EventRequest:
        """A run of ``workflow`` for ``event`` named by ``identity``; for a source of waits
        (:attr:`events`), the event itself (its ``source`` ``origin``, e.g. ``s3:<bucket>``),
        appended for the runs waiting on it."""
        if self.events:
            data = event.model_dump(mode="json", exclude={"trigger", "received_at"})
            return EventRequest(self.events, identity, data, origin)
        return RunRequest(workflow, run_id_for(workflow, self.source, identity), event)

    async def _append_events(self, events: list[StoredEvent]) -> None:
        """Append ``events`` to the events topic (the matching router forwards them)."""
        if not events:
            return
        topic = self.engine.topics.events
        messages = []
        for event in events:
            value, headers = encode_unit([event])
            messages.append(Message(topic, value, key=event.stream, headers=headers))
        await self.engine.log.append(messages)
        self.published += len(events)
        events.clear()  # durable: a retry of the batch's run requests does not append them again

    async def _write_letters(self, letters: dict[str, DeadLetter]) -> None:
        """Append the letters not written before (see :mod:`deerflow.connectors._letters`)."""
        if not letters:
            return
        ids = LetterIds.of(self.engine)
        keyed = [i for i, letter in letters.items() if letter.key is not None]
        fresh = (await ids.fresh(keyed) if keyed else set()) | (set(letters) - set(keyed))
        for known in set(letters) - fresh:
            log.info(
                "%s: input %s has a dead letter already (%s); not writing another",
                whose(letters[known], self.name),
                letters[known].key,
                known,
            )
        if fresh:
            await self.engine.log.append(
                [letter_message(self.engine, self.name, letters[i], i) for i in fresh]
            )
            await ids.written([i for i in keyed if i in fresh])
            self.dead_lettered += len(fresh)
        letters.clear()  # written: a retry of the batch's run requests does not write them again

    async def _request(self, request: RunRequest) -> None:
        wf = self.engine.registry.get(request.workflow)
        routed = wf.route_trigger(request.event) if wf is not None else None
        if routed is not None:
            await self._request_transition(request, *routed)
            return
        await self.engine.start_run(
            request.workflow,
            run_id=request.run_id,
            input=request.input,
            params=request.params,
            trigger=request.event.model_dump(mode="json"),
        )

    async def _request_transition(
        self, request: RunRequest, instance: str, transition: str
    ) -> None:
        """A state machine's trigger event asks an instance for a transition.

        The request id is the event's run id, so a redelivered event is the same request. A
        transition the instance cannot take (or an unknown instance) is a dead letter, not a
        reason to hold back the rest of the batch.
        """
        try:
            await self.engine.send(
                instance,
                transition,
                payload=request.event.model_dump(mode="json"),
                request_id=request.run_id,
                wait=False,
            )
        except (TransitionNotAllowed, RunNotFound) as exc:
            letter = DeadLetter(
                reason=str(exc),
                source=type(self).__name__,
                details={"instance": instance, "transition": transition},
            )
            await self._write_letters({letter_id(self.name, None): letter})


class PollingSource(BackgroundService, TriggerSource[T]):
    """A trigger source that reads its input in one loop.

    :meth:`start` attaches the engine's load gauge, then connects (``_open``) and runs
    ``_run``; it is idempotent. :meth:`stop` sets :attr:`stopping`, lets the loop finish the
    batch in hand (it watches ``stopping``), then disconnects (``_close``); it is idempotent
    and safe before :meth:`start`.
    """

    graceful_stop = True

    def __init__(self, engine: Engine, name: str, *, max_running: int | None = None) -> None:
        TriggerSource.__init__(self, engine, name, max_running=max_running)
        BackgroundService.__init__(self)

    def loop_name(self) -> str:
        """See :meth:`BackgroundService.loop_name`."""
        return f"deerflow-{self.source}-{self.name}"

    async def start(self) -> None:
        """Connect to the source and start taking input; idempotent."""
        if self.running:
            return
        await self._attach_load()
        await super().start()


async def backoff_sleep(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stopping`` is set, whichever comes first."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return
