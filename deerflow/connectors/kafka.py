"""Kafka topic triggers: a consumer group that starts one run per accepted message.

One :class:`KafkaTriggerSource` runs per (cluster, consumer group) and routes each topic to the
workflow whose :class:`~deerflow.events.KafkaEvent` names it. For each batch it decodes the
messages (JSON, orjson; a CloudEvent in the Kafka protocol binding, ``ce_`` headers or a
structured ``application/cloudevents+json`` value, becomes its data, and its source + id the
run's identity), checks the ``payload_schema`` and applies the ``filter``, requests the
runs (run id from group/topic/partition/offset, or from the trigger's ``dedupe_key``),
dead-letters what cannot be read, and commits the offsets only
after all of that is durable. So a crash redelivers, and a redelivery is the same run.

The source topic is read through deerflow's own :class:`~deerflow.log.base.EventLog`
consumer (Kafka on a ``kafka://`` store or ``KafkaEvent(bootstrap_servers=...)``, else
``DEERFLOW_KAFKA_BOOTSTRAP``), so its broker-quirk handling is shared with the engine.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from deerflow.connectors import _cloudevents
from deerflow.connectors._letters import excerpt
from deerflow.connectors.base import (
    Action,
    DeadLetter,
    PollingSource,
    RunRequest,
    backoff_sleep,
    run_id_for,
    too_large,
    unstorable,
)
from deerflow.errors import ConnectorError, DeerflowError
from deerflow.events import CloudEvent, KafkaEvent, KafkaMessageEvent
from deerflow.log import open_log
from deerflow.log.base import EventLog, GroupConsumer, Record, TopicPartition
from deerflow.runtime import Engine

log = logging.getLogger("deerflow.connectors.kafka")


@dataclass(frozen=True, slots=True)
class KafkaRoute:
    """One topic's trigger: which workflow it starts, under which trigger name."""

    workflow: str
    trigger: KafkaEvent
    name: str


def source_url_for(engine: Engine, trigger: KafkaEvent) -> str | None:
    """The ``kafka://`` URL of ``trigger``'s cluster, or ``None`` for the engine's own log.

    ``bootstrap_servers`` wins, then the engine's own Kafka store, then
    ``DEERFLOW_KAFKA_BOOTSTRAP``.
    """
    bootstrap = trigger.bootstrap_servers
    if bootstrap is None and engine.log.url.startswith("kafka://"):
        return None
    bootstrap = bootstrap or os.environ.get("DEERFLOW_KAFKA_BOOTSTRAP")
    if not bootstrap:
        raise ConnectorError(
            f"KafkaEvent(topic={trigger.topic!r}) needs a Kafka cluster: run on a kafka:// "
            "store, pass bootstrap_servers=, or set DEERFLOW_KAFKA_BOOTSTRAP",
            retriable=False,
        )
    return bootstrap if "://" in bootstrap else f"kafka://{bootstrap}"


def source_log_for(engine: Engine, url: str | None) -> tuple[EventLog, bool]:
    """The log for :func:`source_url_for`'s answer, and whether the caller starts/stops it."""
    return (engine.log, False) if url is None else (open_log(url), True)


def _headers(record: Record) -> dict[str, str]:
    return {name: value.decode("utf-8", "replace") for name, value in record.headers}


def _letter(record: Record, route: KafkaRoute, reason: str) -> DeadLetter:
    try:
        value: str = record.value.decode()
        encoding = "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(record.value).decode(), "base64"
    details = {
        "trigger": route.name,
        "workflow": route.workflow,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "timestamp": record.timestamp_ms,
        "headers": _headers(record),
        "value": value,
        "value_encoding": encoding,
    }
    return DeadLetter(
        reason=reason,
        source="kafka",
        details=details,
        key=f"{record.topic}/{record.partition}/{record.offset}",
        headers=record.headers,
    )


class _PoisonError(Exception):
    """A message that cannot start a run; the text is the dead letter's reason."""


_FILTERED: Any = object()


def _decoded(record: Record) -> tuple[Any, CloudEvent | None]:
    """The message a record carries (a CloudEvent's data) and the CloudEvent, if it is one;
    raises :class:`_PoisonError` saying why it cannot be read."""
    try:
        cloudevent = _cloudevents.from_kafka(record.headers, record.key, record.value)
    except ValueError as exc:
        raise _PoisonError(str(exc)) from None
    if cloudevent is not None:
        return cloudevent.data, cloudevent
    try:
        return orjson.loads(record.value), None
    except orjson.JSONDecodeError as exc:
        # Say what the input was rather than where the JSON library stopped reading it.
        what = "nested too deeply to read" if "depth" in str(exc) else "not JSON"
        raise _PoisonError(f"{what}: {excerpt(record.value)}") from None


def _accepted(trigger: KafkaEvent, message: Any) -> Any:
    """The message as the trigger takes it, or ``_FILTERED``; raises :class:`_PoisonError`
    saying why not."""
    if trigger.payload_schema is not None:
        try:
            message = trigger.payload_schema.model_validate(message).model_dump(mode="json")
        except ValidationError as exc:
            raise _PoisonError(
                f"message does not match the schema: "
                f"{exc.errors(include_url=False, include_input=False)}"
            ) from None
        except ValueError as exc:  # valid, but pydantic cannot dump it (nested too deeply)
            raise _PoisonError(f"message cannot be stored: {exc}") from None
    if trigger.filter is not None:
        try:
            accepted = bool(trigger.filter(message))
        except Exception as exc:  # any failure of the user's filter
            raise _PoisonError(f"filter raised {type(exc).__name__}: {exc}") from None
        if not accepted:
            return _FILTERED
    return message


class KafkaTriggerSource(PollingSource[Record]):
    """A member of one consumer group, starting runs for the topics in ``routes``.

    Args:
        engine: the engine runs are requested on.
        group: the Kafka consumer group.
        routes: topic -> route.
        log: the log holding the topics (see :func:`source_log_for`).
        owns_log: start and stop ``log`` with this source.
        replay_nonce: set by ``triggers replay --new-runs``: new run ids for old messages.
    """

    source = "kafka"

    def __init__(
        self,
        engine: Engine,
        group: str,
        routes: Mapping[str, KafkaRoute],
        *,
        log: EventLog,
        owns_log: bool = False,
        replay_nonce: str | None = None,
        max_running: int | None = None,
    ) -> None:
        super().__init__(engine, group, max_running=max_running)
        self.group = group
        self.routes = dict(routes)
        self.log = log
        self._owns_log = owns_log
        self._replay_nonce = replay_nonce
        first = next(iter(self.routes.values()))
        self.batch_size = min(route.trigger.batch_size for route in self.routes.values())
        self._start_from = first.trigger.start_from
        self._consumer: GroupConsumer | None = None
        self._paused = False

    def describe(self) -> str:
        """See :meth:`TriggerSource.describe`."""
        return f"Kafka consumer group {self.group} ({', '.join(sorted(self.routes))})"

    async def _open(self) -> None:
        """Join the group (the loop consumes)."""
        try:
            if self._owns_log:
                await self.log.start()
            self._consumer = self.log.consumer(
                self.group, sorted(self.routes), start_from=self._start_from
            )
            await self._consumer.start()
        except DeerflowError as exc:
            names = ", ".join(sorted(r.name for r in self.routes.values()))
            hint = (
                "; check bootstrap_servers= or $DEERFLOW_KAFKA_BOOTSTRAP" if self._owns_log else ""
            )
            raise ConnectorError(
                f"Kafka trigger {names}: {exc}{hint}", retriable=exc.retriable
            ) from exc
        log.info(
            "kafka trigger: group %s on %s, topics %s",
            self.group,
            self.log.url,
            ", ".join(sorted(self.routes)),
        )

    async def _close(self) -> None:
        """The batch in hand is finished (committed if its runs are durable): leave the group."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._owns_log:
            await self.log.stop()

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while not self.stopping.is_set():
            self._apply_backpressure(consumer)
            try:
                records = await consumer.poll(timeout=0.2, max_records=self.batch_size)
            except Exception as exc:  # the loop must outlive any broker or decoding failure
                log.warning("kafka trigger %s: poll failed (%r); retrying", self.group, exc)
                await backoff_sleep(self.stopping, 1.0)
                continue
            if not records:
                continue
            try:
                await self.deliver(records)
            except Exception as exc:
                # Not committed: read the batch again (unless stopping: the next owner will).
                log.error("kafka trigger %s: batch not acknowledged: %r", self.group, exc)
                if not self.stopping.is_set():
                    await self._rewind(consumer, records)
                    await backoff_sleep(self.stopping, 1.0)

    def _apply_backpressure(self, consumer: GroupConsumer) -> None:
        # Paused partitions stay ours in the group; nothing is fetched or buffered meanwhile.
        if self.saturated():
            consumer.pause(consumer.assignment())
            self._paused = True
        elif self._paused:
            consumer.resume(consumer.assignment())
            self._paused = False

    async def _rewind(self, consumer: GroupConsumer, records: Sequence[Record]) -> None:
        first: dict[TopicPartition, int] = {}
        for record in records:
            first.setdefault(record.tp, record.offset)
        for tp, offset in first.items():
            with contextlib.suppress(DeerflowError):
                await consumer.seek(tp, offset)

    # -- the template's parts -----------------------------------------------------------------

    def interpret(self, item: Record) -> Sequence[Action]:
        """Decode, filter and describe one message (a run, a dead letter, or nothing)."""
        route = self.routes.get(item.topic)
        if route is None:
            return []
        try:
            message, cloudevent = _decoded(item)
            message = _accepted(route.trigger, message)
            if message is _FILTERED:
                return []
            identity = self._identity(route.trigger, item, message, cloudevent)
        except _PoisonError as exc:
            return [_letter(item, route, str(exc))]
        event = KafkaMessageEvent(
            trigger=route.name,
            received_at=time.time(),
            message=message,
            key=item.key,
            headers=_headers(item),
            topic=item.topic,
            partition=item.partition,
            offset=item.offset,
            timestamp=item.timestamp_ms,
            raw={"value": item.value.decode("utf-8", "replace")},
            cloudevent=cloudevent,
        )
        request = RunRequest(route.workflow, run_id_for(route.workflow, "kafka", identity), event)
        problem = unstorable(request) or too_large(self.engine, request)
        return [_letter(item, route, problem) if problem else request]

    def _identity(
        self, trigger: KafkaEvent, item: Record, message: Any, cloudevent: CloudEvent | None
    ) -> str:
        if trigger.dedupe_key is None and cloudevent is not None:
            # A CloudEvent names itself (source + id), wherever and however often it is sent.
            identity = f"{self.group}/{_cloudevents.identity(cloudevent)}"
        elif trigger.dedupe_key is None:
            identity = f"{self.group}/{item.topic}/{item.partition}/{item.offset}"
        else:
            try:
                key = trigger.dedupe_key(message)
            except Exception as exc:  # any failure of the user's function
                raise _PoisonError(f"dedupe_key raised {type(exc).__name__}: {exc}") from None
            if key is None:
                raise _PoisonError("dedupe_key returned None")
            identity = f"{self.group}/{item.topic}/id/{key}"
        if self._replay_nonce is not None:
            identity += f"#replay-{self._replay_nonce}"
        return identity

    async def acknowledge(self, items: Sequence[Record]) -> None:
        """Commit past ``items``; a failed commit only means they are delivered again."""
        if self._consumer is None or not items:
            return
        offsets: dict[TopicPartition, int] = {}
        for record in items:
            offsets[record.tp] = max(offsets.get(record.tp, 0), record.offset + 1)
        try:
            await self._consumer.commit(offsets)
        except DeerflowError as exc:
            # Typically a rebalance moved the partition: its next owner re-reads the records
            # and requests the same run ids, which the engine ignores.
            log.warning(
                "kafka trigger %s: commit failed (%s); records will be redelivered", self.group, exc
            )


async def replay(
    source: KafkaTriggerSource,
    *,
    from_offset: int = 0,
    since_ms: int | None = None,
    partitions: Sequence[int] | None = None,
) -> int:
    """Deliver a topic's past messages again, outside the group; returns runs requested.

    Reads every partition of each routed topic from ``from_offset`` (records older than
    ``since_ms`` skipped) to its end as of now. Without a ``replay_nonce`` on ``source`` the
    run ids are the original ones, so messages that already started a run start nothing new.
    """
    total = 0
    for topic in source.routes:
        count = await source.log.partition_count(topic)
        tps = [TopicPartition(topic, p) for p in (partitions or range(count))]
        async with source.log.reader({tp: from_offset for tp in tps}) as reader:
            idle = 0
            while True:
                batch = await reader.poll(timeout=0.5, max_records=source.batch_size)
                idle = 0 if batch else idle + 1
                kept = [r for r in batch if since_ms is None or r.timestamp_ms >= since_ms]
                actions = [a for record in kept for a in source.interpret(record)]
                total += len(await source.submit(actions))
                # An empty partition may never report its end; a few empty polls also end it.
                if not batch and (all(reader.lag(tp) == 0 for tp in tps) or idle >= 6):
                    break
    return total


def new_replay_nonce() -> str:
    """A fresh nonce for ``--new-runs``."""
    return uuid.uuid4().hex[:12]
