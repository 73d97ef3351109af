"""S3 triggers by polling (``S3Event(mode="poll")``), for S3-compatible stores without
notifications.

Every ``poll_interval`` seconds the source lists the bucket under the trigger's prefix
(ListObjectsV2, page by page) and requests a run for each object it has not seen. What it has
seen is a durable cursor, kept as records on the ``<prefix>.s3-cursors`` topic of the event log:

* ``watermark``: the newest LastModified seen;
* ``seen``: key -> ETag|LastModified of the objects no older than ``watermark - lookback``.

An object is new when its LastModified is within that window and its tag is not in ``seen``.
The cursor is saved after each batch of run requests is durable, so a restart neither misses
nor repeats an object (a crash between the two re-requests the same run ids, which start
nothing new). The window bounds memory: objects whose LastModified lies more than
``lookback`` seconds before the newest one seen when they first appear in a listing (a very
long multipart upload) are not picked up.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import deerflow.connectors._s3setup as _s3setup
from deerflow.connectors._ledger import Ledger
from deerflow.connectors.base import Action, PollingSource, backoff_sleep
from deerflow.errors import ConnectorError
from deerflow.events import S3Event, S3ObjectEvent
from deerflow.runtime import Engine

log = logging.getLogger("deerflow.connectors.s3poll")

POLL_EVENT = "s3:ObjectCreated:Poll"
BATCH = 100


def cursor_topic(prefix: str) -> str:
    """The topic holding polling cursors, keyed by trigger name."""
    return f"{prefix}.s3-cursors"


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One entry of a bucket listing."""

    key: str
    etag: str
    size: int
    modified: float
    modified_iso: str

    @property
    def tag(self) -> str:
        """What identifies this version of the object in a listing."""
        return f"{self.etag}|{self.modified_iso}"


def _listed(entry: dict[str, Any]) -> ListedObject:
    modified = entry["LastModified"]
    return ListedObject(
        key=entry["Key"],
        etag=str(entry.get("ETag", "")).strip('"'),
        size=int(entry.get("Size", 0)),
        modified=modified.timestamp(),
        modified_iso=modified.isoformat(),
    )


class S3PollingSource(PollingSource[ListedObject]):
    """Lists one bucket periodically; see the module docstring."""

    source = "s3"

    def __init__(
        self,
        engine: Engine,
        workflow: str,
        trigger: S3Event,
        name: str,
        *,
        client: Any = None,
        max_running: int | None = None,
        events: tuple[str, ...] = (),
    ) -> None:
        super().__init__(engine, name, max_running=max_running)
        self.events = events
        if not any(_matches_created(p) for p in trigger.events):
            raise ConnectorError(
                f"S3 trigger {name}: polling only sees created objects; "
                "events must include s3:ObjectCreated:*",
                retriable=False,
            )
        self.workflow = workflow
        self.trigger = trigger
        self._client = client
        self.ledger = Ledger(engine.log, cursor_topic(engine.topics.prefix))
        self.watermark = 0.0
        self.seen: dict[str, str] = {}
        self._has_cursor = False

    async def _open(self) -> None:
        """Load the cursor (the loop polls)."""
        if self._client is None:
            self._client = _s3setup.clients(self.trigger)[0]
        await _s3setup.in_thread(
            self.trigger,
            self.name,
            f"listing bucket {self.trigger.bucket!r}",
            _s3setup.check_bucket,
            self._client,
            self.trigger,
        )
        await self.ledger.start()
        cursor = self.ledger.get(self.name)
        if cursor is not None:
            self.watermark, self.seen = float(cursor["watermark"]), dict(cursor["seen"])
            self._has_cursor = True
        elif self.trigger.start_from == "earliest":
            self._has_cursor = True  # everything listed is new

    def describe(self) -> str:
        """See :meth:`TriggerSource.describe`."""
        return f"S3 trigger {self.name} (polling bucket {self.trigger.bucket})"

    async def _close(self) -> None:
        """The batch in hand is finished."""
        await self.ledger.stop()

    async def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                found = await self.poll_once()
                if found:
                    log.info("s3 poll %s: %d new objects", self.name, found)
            except Exception as exc:  # boto3 or the store; retry next time
                log.warning("s3 poll %s failed (%s); retrying", self.name, exc)
            await backoff_sleep(self.stopping, self.trigger.poll_interval)

    # -- one poll -------------------------------------------------------------------------------

    def _pages(self) -> Iterator[list[dict[str, Any]]]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.trigger.bucket, Prefix=self.trigger.key_prefix):
            yield list(page.get("Contents", []))

    async def poll_once(self) -> int:
        """List the bucket once and request runs for new objects; returns how many."""
        pages = self._pages()
        floor = self.watermark - self.trigger.lookback
        window: dict[str, ListedObject] = {}
        batch: list[ListedObject] = []
        found = 0
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            for obj in map(_listed, page):
                if obj.modified < floor or not obj.key.endswith(self.trigger.key_suffix):
                    continue
                window[obj.key] = obj
                if self._has_cursor and self.seen.get(obj.key) != obj.tag:
                    batch.append(obj)
            while len(batch) >= BATCH:
                found += BATCH
                await self.deliver(batch[:BATCH])
                batch = batch[BATCH:]
        if batch:
            found += len(batch)
            await self.deliver(batch)
        await self._advance(window)
        return found

    async def _advance(self, window: dict[str, ListedObject]) -> None:
        """Move the watermark to the newest object seen and forget what fell out of the window.

        The first poll without a cursor only records what is there (``start_from="now"``).
        """
        newest = max([self.watermark, *(o.modified for o in window.values())])
        floor = newest - self.trigger.lookback
        seen = {k: o.tag for k, o in window.items() if o.modified >= floor}
        if newest != self.watermark or seen != self.seen or not self._has_cursor:
            await self.ledger.put({self.name: {"watermark": newest, "seen": seen}})
        self.watermark, self.seen, self._has_cursor = newest, seen, True

    def interpret(self, item: ListedObject) -> Sequence[Action]:
        """One run per new object."""
        event = S3ObjectEvent(
            trigger=self.name,
            received_at=time.time(),
            bucket=self.trigger.bucket,
            key=item.key,
            event_name=POLL_EVENT,
            size=item.size,
            etag=item.etag or None,
            event_time=item.modified_iso,
            raw={
                "Key": item.key,
                "ETag": item.etag,
                "Size": item.size,
                "LastModified": item.modified_iso,
            },
        )
        identity = f"{self.trigger.bucket}\x00{item.key}\x00poll\x00{item.tag}"
        return [self.request_for(self.workflow, identity, event, f"s3:{event.bucket}")]

    async def acknowledge(self, items: Sequence[ListedObject]) -> None:
        """Save the cursor with ``items`` marked seen (same watermark)."""
        self.seen.update({o.key: o.tag for o in items})
        await self.ledger.put({self.name: {"watermark": self.watermark, "seen": self.seen}})


def _matches_created(pattern: str) -> bool:
    return fnmatch.fnmatchcase(POLL_EVENT, pattern)
