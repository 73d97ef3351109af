"""S3 triggers, the AWS way: bucket notification -> SQS queue -> deerflow.

:class:`S3NotificationSource` receives batches from the trigger's queue, parses the standard S3
event records (skipping ``s3:TestEvent``), keeps those the trigger matches, requests one run per
object event and deletes the SQS messages only once those requests are durable. Unreadable
messages go to the dead-letter topic (then are deleted, so they do not come back forever).

Deduplication is by run id: bucket + decoded key + versionId, else sequencer, else ETag (see
:func:`~deerflow.connectors._s3records.identity`), so a redelivered message, a duplicate record
or moto's second event for a multipart upload is the same run. Stale events: the newest
sequencer seen per key is kept durably in a :class:`~deerflow.connectors._ledger.Ledger` on
the ``<prefix>.s3-sequencers`` topic (shared by processes, surviving restarts); an event with an
older sequencer than that, or than another event for the key in the same batch, starts nothing.
Polling mode is in :mod:`deerflow.connectors.s3poll`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import deerflow.connectors._s3setup as _s3setup
from deerflow.connectors._ledger import Ledger, greatest
from deerflow.connectors._s3records import (
    NotAnS3EventError,
    identity,
    matches,
    newest_by_key,
    parse_body,
    sequencer_value,
    to_event,
)
from deerflow.connectors.base import (
    Action,
    DeadLetter,
    PollingSource,
    RunRequest,
    backoff_sleep,
    too_large,
    unstorable,
)
from deerflow.events import S3Event, S3ObjectEvent
from deerflow.runtime import Engine

log = logging.getLogger("deerflow.connectors.s3")
T = TypeVar("T")

SqsMessage = dict[str, Any]
Parsed = list[S3ObjectEvent | DeadLetter]


def sequencer_topic(prefix: str) -> str:
    """The topic holding the newest sequencer per S3 key."""
    return f"{prefix}.s3-sequencers"


class S3NotificationSource(PollingSource[SqsMessage]):
    """Consumes the SQS queue of one :class:`~deerflow.events.S3Event` (notification mode).

    Args:
        engine: the engine runs are requested on.
        workflow: the workflow the trigger starts.
        trigger: the spec.
        name: the trigger's name (also names the default queue).
        clients: boto3 ``(s3, sqs)`` clients; default from the trigger's settings.
        events: event types each object event becomes instead of a run (a source of
            ``wait_for_event(source=S3Event(...))``).
    """

    source = "s3"

    def __init__(
        self,
        engine: Engine,
        workflow: str,
        trigger: S3Event,
        name: str,
        *,
        clients: tuple[Any, Any] | None = None,
        max_running: int | None = None,
        events: tuple[str, ...] = (),
    ) -> None:
        super().__init__(engine, name, max_running=max_running)
        self.events = events
        self.workflow = workflow
        self.trigger = trigger
        self._clients = clients
        self.queue_url = ""
        self.ledger = Ledger(engine.log, sequencer_topic(engine.topics.prefix), merge=greatest)
        self._parsed: dict[str, Parsed] = {}
        self._newest: dict[tuple[str, str], str] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    async def _open(self) -> None:
        """Set up (or find) the queue and the bucket notification (the loop consumes)."""
        s3, sqs = self._clients or _s3setup.clients(self.trigger)
        self._clients = (s3, sqs)
        bucket = self.trigger.bucket
        if self.trigger.queue:
            self.queue_url = await self._setup(
                f"finding SQS queue {self.trigger.queue!r}",
                _s3setup.queue_url,
                sqs,
                self.trigger.queue,
            )
        else:
            queue = _s3setup.default_queue_name(self.engine.topics.prefix, self.name)
            if self.trigger.configure_bucket:
                await self._setup(
                    f"listing bucket {bucket!r}", _s3setup.check_bucket, s3, self.trigger
                )
            self.queue_url, arn = await self._setup(
                f"creating SQS queue {queue!r}", _s3setup.ensure_queue, sqs, queue, bucket
            )
            if self.trigger.configure_bucket:
                await self._setup(
                    f"adding a notification to bucket {bucket!r}",
                    _s3setup.ensure_notification,
                    s3,
                    self.trigger,
                    f"deerflow-{queue}",
                    arn,
                )
        await self.ledger.start()
        log.info("s3 trigger %s: bucket %s via %s", self.name, self.trigger.bucket, self.queue_url)

    def describe(self) -> str:
        """See :meth:`TriggerSource.describe`."""
        return f"S3 trigger {self.name} (bucket {self.trigger.bucket})"

    async def _setup(self, attempt: str, call: Callable[..., T], *args: Any) -> T:
        return await _s3setup.in_thread(self.trigger, self.name, attempt, call, *args)

    async def _close(self) -> None:
        """The batch in hand is finished (a long poll ends within ``wait_seconds``)."""
        await self.ledger.stop()

    async def _run(self) -> None:
        while not self.stopping.is_set():
            if self.saturated():
                await backoff_sleep(self.stopping, 0.5)  # receive nothing: SQS keeps the backlog
                continue
            try:
                messages = await asyncio.to_thread(self._receive)
            except Exception as exc:  # boto3 raises many kinds; retry all
                log.warning("s3 trigger %s: receiving failed (%s); retrying", self.name, exc)
                await backoff_sleep(self.stopping, 2.0)
                continue
            if not messages:
                continue
            try:
                await self.deliver(messages)
            except Exception as exc:  # the loop must outlive any store or AWS failure
                # Not deleted: SQS delivers them again after the visibility timeout.
                log.error("s3 trigger %s: batch not acknowledged: %r", self.name, exc)

    def _receive(self) -> list[SqsMessage]:
        assert self._clients is not None
        response = self._clients[1].receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.trigger.wait_seconds,
            VisibilityTimeout=self.trigger.visibility_timeout,
        )
        return list(response.get("Messages", []))

    # -- the template's parts -----------------------------------------------------------------

    async def prepare(self, items: Sequence[SqsMessage]) -> None:
        """Parse the batch and find, per key, the newest sequencer (batch and ledger)."""
        await self.ledger.refresh()
        now = time.time()
        self._parsed = {m["MessageId"]: self._parse(m, now) for m in items}
        events = [
            e
            for parsed in self._parsed.values()
            for e in parsed
            if isinstance(e, S3ObjectEvent) and matches(self.trigger, e)
        ]
        self._newest = newest_by_key(events)

    def _parse(self, message: SqsMessage, now: float) -> Parsed:
        try:
            body = parse_body(message.get("Body", ""))
        except NotAnS3EventError as exc:
            return [self._letter(message, str(exc))]
        parsed: Parsed = []
        for record in body.records:
            try:
                parsed.append(to_event(record, self.name, now))
            except NotAnS3EventError as exc:
                parsed.append(self._letter(message, str(exc), record))
        return parsed

    def _letter(self, message: SqsMessage, reason: str, record: Any = None) -> DeadLetter:
        details = {
            "workflow": self.workflow,
            "queue": self.queue_url,
            "message_id": message.get("MessageId"),
            "body": message.get("Body", ""),
            "record": record,
        }
        return DeadLetter(
            reason=reason, source="s3", details=details, key=str(message.get("MessageId"))
        )

    def _stale(self, event: S3ObjectEvent) -> bool:
        if not event.sequencer:
            return False
        value = sequencer_value(event.sequencer)
        newest = max(
            self._newest.get((event.bucket, event.key), ""),
            self.ledger.get(f"{event.bucket}/{event.key}") or "",
        )
        return value < newest

    def interpret(self, item: SqsMessage) -> Sequence[Action]:
        """One run per matching, non-stale record; dead letters for unreadable ones."""
        actions: list[Action] = []
        for event in self._parsed.get(item["MessageId"], []):
            if isinstance(event, DeadLetter):
                actions.append(event)
            elif not matches(self.trigger, event):
                continue
            elif self._stale(event):
                log.info(
                    "s3 trigger %s: ignoring a stale event for %s/%s (sequencer %s)",
                    self.name,
                    event.bucket,
                    event.key,
                    event.sequencer,
                )
            else:
                request = self.request_for(
                    self.workflow, identity(event), event, f"s3:{event.bucket}"
                )
                problem = (
                    unstorable(request) or too_large(self.engine, request)
                    if isinstance(request, RunRequest)
                    else None
                )
                actions.append(self._letter(item, problem) if problem else request)
        return actions

    async def acknowledge(self, items: Sequence[SqsMessage]) -> None:
        """Record the newest sequencers, then delete the messages from the queue."""
        newer = {
            f"{b}/{k}": v
            for (b, k), v in self._newest.items()
            if v > (self.ledger.get(f"{b}/{k}") or "")
        }
        await self.ledger.put(newer)
        await asyncio.to_thread(self._delete, list(items))

    def _delete(self, items: list[SqsMessage]) -> None:
        assert self._clients is not None
        for start in range(0, len(items), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(items[start : start + 10])
            ]
            response = self._clients[1].delete_message_batch(
                QueueUrl=self.queue_url, Entries=entries
            )
            for failed in response.get("Failed", []):
                # Delivered again later; the same run id makes that harmless.
                log.warning("s3 trigger %s: could not delete a message: %s", self.name, failed)
