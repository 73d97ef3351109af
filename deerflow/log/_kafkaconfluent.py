"""The producer of ``kafka://...?client=confluent``: confluent-kafka (librdkafka) behind the
surface of aiokafka's producer that :class:`~deerflow.log.kafka.KafkaEventLog` uses.

librdkafka batches, sends and retries in its own threads; a thread of this module polls it for
delivery reports and hands each poll's reports to the event loop in one call, so a batch of
appends costs one wake-up of the loop, not one per message. A send's future resolves only from
its delivery report, which librdkafka gives once every in-sync replica has the record
(``acks=all``): nothing is acknowledged before it is durable, as with aiokafka.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deerflow.errors import MissingDependency
from deerflow.log._kafkaclient import KafkaError

try:
    from confluent_kafka import KafkaError as KafkaError_
    from confluent_kafka import KafkaException, Producer
except ImportError as exc:  # pragma: no cover - exercised only without confluent-kafka
    raise MissingDependency(
        "kafka://...?client=confluent needs confluent-kafka: pip install confluent-kafka"
    ) from exc

logger = logging.getLogger(__name__)

#: how long the polling thread waits for a delivery report before looking at its stop flag
_POLL_S = 0.05
#: seconds of one metadata try while the producer starts
_REACH_TRY_S = 0.25
#: a topic's metadata errors while its creation spreads through the cluster
_NOT_YET_KNOWN = frozenset({KafkaError_.UNKNOWN_TOPIC_OR_PART, KafkaError_.LEADER_NOT_AVAILABLE})


class ConfluentSendError(KafkaError):  # type: ignore[misc]
    """A delivery report's or a request's error, as an aiokafka ``KafkaError`` so that the log
    reports it the same way (with librdkafka's own retriable flag)."""

    def __init__(self, error: Any) -> None:
        super().__init__(str(error))
        self.retriable = bool(getattr(error, "retriable", lambda: True)())


@dataclass(frozen=True)
class Delivered:
    """Where a record landed (the fields of aiokafka's ``RecordMetadata`` the log reads)."""

    topic: str
    partition: int
    offset: int


class ConfluentProducer:
    """``start``, ``send``, ``partitions_for`` and ``stop`` as aiokafka's producer has them.

    Args:
        bootstrap: ``host:port[,host:port]``.
        client_id: shown in broker logs.
        linger_ms: librdkafka's ``linger.ms``.
        idempotent: librdkafka's ``enable.idempotence``.
        timeout: seconds a metadata request may take.
    """

    def __init__(
        self, bootstrap: str, client_id: str, linger_ms: int, idempotent: bool, timeout: float
    ) -> None:
        self._config = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": idempotent,
            "linger.ms": linger_ms,
            # A key's records stay in order, as with aiokafka (one batch in flight per
            # partition): without idempotence, a retried request could land after a later one.
            **({} if idempotent else {"max.in.flight.requests.per.connection": 1}),
            # aiokafka's max_request_size, so both clients take the same records
            "message.max.bytes": 1_048_576,
            "socket.nagle.disable": True,
            # librdkafka's own log lines go to logging, not straight to stderr
            "logger": logger,
        }
        self._timeout = timeout
        self._producer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        #: futures of sends whose delivery report has not come (bounded by librdkafka's queue)
        self._pending: set[asyncio.Future[Delivered]] = set()
        #: the reports of the poll in progress (written by the polling thread only)
        self._reports: list[tuple[Any, Any, Any]] = []

    async def start(self) -> None:
        """Create the producer, reach the brokers once, start the polling thread.

        Raises:
            ConnectionError: no broker answered within the timeout, or every broker refused.
        """
        self._loop = asyncio.get_running_loop()
        # Only the last few: librdkafka keeps reporting errors to it after the start.
        down: deque[Any] = deque(maxlen=8)
        producer = Producer({**self._config, "error_cb": down.append})
        try:
            await asyncio.to_thread(self._reach, producer, down)
        except BaseException:
            await asyncio.to_thread(producer.flush, 0)
            raise
        self._producer = producer
        self._stopping.clear()
        self._poller = threading.Thread(target=self._poll, name="deerflow-kafka-poll", daemon=True)
        self._poller.start()

    def _reach(self, producer: Any, down: deque[Any]) -> None:
        """Metadata from any broker, in short tries, so that an address where every broker
        refuses fails at once (as aiokafka's does) instead of after the whole timeout."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                producer.list_topics(None, _REACH_TRY_S)
                return
            except KafkaException as exc:
                producer.poll(0)  # serves error_cb
                if any(e.code() == KafkaError_._ALL_BROKERS_DOWN for e in down):
                    raise ConnectionError(f"every broker refused: {down[-1].str()}") from exc
                if time.monotonic() >= deadline:
                    raise ConnectionError(str(exc.args[0] if exc.args else exc)) from exc

    def _poll(self) -> None:
        producer, loop = self._producer, self._loop
        assert producer is not None and loop is not None
        while not self._stopping.is_set():
            reports: list[tuple[Any, Any, Any]] = []
            self._reports = reports
            if producer.poll(_POLL_S) and reports:
                loop.call_soon_threadsafe(self._settle, reports)

    def _settle(self, reports: list[tuple[Any, Any, Any]]) -> None:
        for future, error, message in reports:
            self._pending.discard(future)
            if future.done():
                continue
            if error is not None:
                future.set_exception(ConfluentSendError(error))
            else:
                future.set_result(Delivered(message.topic(), message.partition(), message.offset()))

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> asyncio.Future[Delivered]:
        """Queue one record; the returned future resolves with where it landed, once durable."""
        if self._producer is None or self._loop is None:
            raise ConfluentSendError("the producer is not started")
        future: asyncio.Future[Delivered] = self._loop.create_future()

        def delivered(error: Any, message: Any) -> None:  # on the polling thread, inside poll()
            self._reports.append((future, error, message))

        options: dict[str, Any] = {"key": key, "on_delivery": delivered}
        if partition is not None:
            options["partition"] = partition
        if headers:
            options["headers"] = list(headers)
        while True:
            try:
                self._producer.produce(topic, value, **options)
                break
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                await asyncio.sleep(0.001)
            except KafkaException as exc:
                raise ConfluentSendError(exc.args[0] if exc.args else exc) from exc
        self._pending.add(future)
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        """The partitions of ``topic`` from a metadata request.

        A topic just created is unknown to a broker (or has no leader yet) until its metadata
        has spread: asked again until the timeout, as aiokafka does.
        """
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                meta = await asyncio.to_thread(self._producer.list_topics, topic, self._timeout)
            except KafkaException as exc:
                raise ConfluentSendError(exc.args[0] if exc.args else exc) from exc
            found = meta.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                return set(found.partitions)
            error = getattr(found, "error", None)
            spreading = found is None or error is None or error.code() in _NOT_YET_KNOWN
            if not spreading or time.monotonic() >= deadline:
                raise ConfluentSendError(error or f"no topic {topic!r}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Deliver what is queued (up to the timeout), stop polling, fail what is left."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
        self._reports = []
        await asyncio.to_thread(producer.flush, self._timeout)
        if self._reports:
            self._settle(self._reports)
        for future in list(self._pending):
            if not future.done():
                future.set_exception(ConfluentSendError("the producer stopped"))
        self._pending.clear()
