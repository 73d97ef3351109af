"""S3 objects as a pipeline source: each line (or JSON record) of each object is one item.

Which objects: either ``objects=`` (keys, ``s3://bucket/key`` URLs, S3 event records as S3
sends them, their ``{"Records": [...]}`` bodies, or :class:`~deerflow.events.S3ObjectEvent`
objects; an iterable or async iterable, so the source ends when they do), or ``queue=``, an
SQS queue receiving the bucket's ``s3:ObjectCreated:*`` notifications (the source then runs
until stopped, under ``deerflow serve``). In queue mode a message is deleted only once every
line of its objects has left the pipeline, so a crash redelivers it (at-least-once).

Objects are streamed, a chunk of lines at a time, in a thread (boto3 blocks): a large object is
never held in memory, and under ``block`` the next chunk is read only as the pipeline frees up.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_plus

import orjson

from deerflow.errors import DefinitionError, MissingDependency
from deerflow.pipeline._io import PipelineContext, Source

if TYPE_CHECKING:
    from deerflow.pipeline._backpressure import Intake

Format = Literal["lines", "jsonl"] | Callable[[str], Any]
ObjectRef = tuple[str, str]


def objects_in(value: Any, bucket: str | None) -> list[ObjectRef]:
    """The ``(bucket, key)`` pairs ``value`` names (see the module docstring for the forms)."""
    if isinstance(value, str):
        if value.startswith("s3://"):
            found_bucket, _, key = value[5:].partition("/")
            return [(found_bucket, key)]
        if bucket is None:
            raise ValueError(f"object key {value!r} without a bucket: give S3Source(bucket=)")
        return [(bucket, value)]
    if isinstance(value, Mapping):
        return _objects_in_mapping(value, bucket)
    if hasattr(value, "bucket") and hasattr(value, "key"):
        return [(str(value.bucket), str(value.key))]
    raise ValueError(f"not an S3 object reference: {value!r}")


def _objects_in_mapping(value: Mapping[str, Any], bucket: str | None) -> list[ObjectRef]:
    if isinstance(value.get("Records"), list):
        return [
            ref
            for record in value["Records"]
            if _is_created(record)
            for ref in objects_in(record, bucket)
        ]
    s3 = value.get("s3")
    if isinstance(s3, Mapping):  # one S3 event record; keys arrive URL-encoded
        return [(str(s3["bucket"]["name"]), unquote_plus(str(s3["object"]["key"])))]
    if "key" in value:
        return [(str(value.get("bucket") or bucket), str(value["key"]))]
    raise ValueError(f"not an S3 object reference: {dict(value)!r}")


def _is_created(record: Any) -> bool:
    return isinstance(record, Mapping) and "ObjectCreated" in str(record.get("eventName", ""))


def notification_objects(body: str) -> list[ObjectRef]:
    """The created objects an SQS message of S3 notifications names (SNS-wrapped or not)."""
    data = orjson.loads(body)
    if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
        return notification_objects(str(data["Message"]))
    if isinstance(data, dict) and data.get("Event") == "s3:TestEvent":
        return []
    if not isinstance(data, dict) or not isinstance(data.get("Records"), list):
        raise ValueError("not an S3 event notification")
    return objects_in(data, None)


def _take(lines: Iterator[bytes], count: int) -> list[bytes]:
    return list(itertools.islice(lines, count))


class S3Source(Source):
    """Lines or JSON records of S3 objects (see the module docstring).

    Args:
        bucket: the bucket of plain keys in ``objects``.
        objects: what to read (an iterable or async iterable of object references).
        queue: an SQS queue URL receiving the bucket's notifications (instead of ``objects``).
        format: ``"lines"`` (text lines), ``"jsonl"`` (one JSON value per non-empty line;
            lines that do not parse are dead-lettered) or a function of the line.
        endpoint_url: S3/SQS endpoint (MinIO, moto); else boto3's usual configuration.
        region: AWS region; else boto3's configuration, else ``us-east-1``.
        chunk_lines: lines read from an object per thread hop.
        wait_seconds: SQS long-poll wait (also bounds how long a stop waits for it).
        visibility_timeout: seconds a received message stays hidden before redelivery.

    An item's origin (shown in dead letters) is ``{"bucket", "key", "line"}``.
    """

    def __init__(
        self,
        bucket: str | None = None,
        *,
        objects: Iterable[Any] | AsyncIterable[Any] | None = None,
        queue: str | None = None,
        format: Format = "lines",
        endpoint_url: str | None = None,
        region: str | None = None,
        chunk_lines: int = 500,
        wait_seconds: int = 2,
        visibility_timeout: int = 300,
    ) -> None:
        if (objects is None) == (queue is None):
            raise DefinitionError("S3Source: give exactly one of objects= and queue=")
        self.bucket = bucket
        self.objects = objects
        self.queue = queue
        self.unbounded = queue is not None
        self._parse = _parser(format)
        self.endpoint_url = endpoint_url
        self.region = region
        self.chunk_lines = chunk_lines
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self._s3: Any = None
        self._sqs: Any = None
        self._deletes: set[asyncio.Task[None]] = set()
        self.objects_read = 0
        self.messages_deleted = 0

    async def open(self, context: PipelineContext) -> None:
        """Create the boto3 clients."""
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - only without the extra
            raise MissingDependency("S3Source needs boto3: pip install 'deerflow[s3]'") from exc
        session = boto3.session.Session(region_name=self.region)
        options: dict[str, Any] = {"region_name": session.region_name or "us-east-1"}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        self._s3 = session.client("s3", **options)
        if self.queue is not None:
            self._sqs = session.client("sqs", **options)

    async def run(self, intake: Intake) -> None:
        """Read the objects given, or the queue's objects until the pipeline stops."""
        if self.queue is not None:
            await self._run_queue(intake)
            return
        assert self.objects is not None
        if isinstance(self.objects, AsyncIterable):
            async for value in self.objects:
                await self._read_refs(intake, value, None)
        else:
            for value in self.objects:
                await self._read_refs(intake, value, None)

    async def _read_refs(self, intake: Intake, value: Any, ack: _Countdown | None) -> None:
        try:
            refs = objects_in(value, self.bucket)
        except (ValueError, KeyError, TypeError) as error:
            await intake.reject(value, f"not an S3 object: {error}", ack=_hold(ack))
            return
        for bucket, key in refs:
            if intake.stopping.is_set():
                return
            await self._read_object(intake, bucket, key, ack)

    async def _read_object(
        self, intake: Intake, bucket: str, key: str, ack: _Countdown | None
    ) -> None:
        origin: dict[str, Any] = {"bucket": bucket, "key": key}
        try:
            response = await asyncio.to_thread(self._s3.get_object, Bucket=bucket, Key=key)
        except Exception as error:  # boto3 raises many kinds: each makes the object unreadable
            await intake.reject(
                f"s3://{bucket}/{key}",
                f"cannot read object: {error}",
                origin=origin,
                ack=_hold(ack),
            )
            return
        self.objects_read += 1
        lines = response["Body"].iter_lines(chunk_size=65536)
        number = 0
        while chunk := await asyncio.to_thread(_take, lines, self.chunk_lines):
            for raw in chunk:
                number += 1
                if not await self._offer_line(intake, raw, {**origin, "line": number}, ack):
                    return

    async def _offer_line(
        self, intake: Intake, raw: bytes, origin: dict[str, Any], ack: _Countdown | None
    ) -> bool:
        text = raw.decode("utf-8", "replace")
        try:
            value = self._parse(text)
        except Exception as error:  # any failure of the parser makes the line unreadable
            await intake.reject(
                text,
                f"cannot parse line: {type(error).__name__}: {error}",
                origin=origin,
                ack=_hold(ack),
            )
            return True
        if value is _SKIP:
            return True
        taken = await intake.offer(value, origin=origin, ack=_hold(ack))
        return taken or not intake.stopping.is_set()

    # -- queue mode -----------------------------------------------------------------------------

    async def _run_queue(self, intake: Intake) -> None:
        while not intake.stopping.is_set():
            # Whatever the strategy, a full pipeline receives nothing: the queue keeps the backlog.
            await intake.wait_free(timeout=1.0)
            if intake.stopping.is_set():
                return
            messages = await asyncio.to_thread(self._receive)
            for message in messages:
                await self._read_message(intake, message)

    def _receive(self) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=self.visibility_timeout,
        )
        return list(response.get("Messages", []))

    async def _read_message(self, intake: Intake, message: dict[str, Any]) -> None:
        countdown = _Countdown(lambda: self._delete(message["ReceiptHandle"]))
        try:
            refs = notification_objects(message.get("Body", ""))
        except (ValueError, KeyError, TypeError) as error:
            await intake.reject(
                message.get("Body"),
                f"not an S3 notification: {error}",
                origin={"queue": self.queue, "message": message.get("MessageId")},
                ack=countdown.hold(),
            )
            refs = []
        for bucket, key in refs:
            if intake.stopping.is_set():
                return  # not deleted: the message comes back after its visibility timeout
            await self._read_object(intake, bucket, key, countdown)
        if not intake.stopping.is_set():
            countdown.release()

    def _delete(self, receipt: str) -> None:
        async def delete() -> None:
            await asyncio.to_thread(
                self._sqs.delete_message, QueueUrl=self.queue, ReceiptHandle=receipt
            )
            self.messages_deleted += 1

        task = asyncio.get_running_loop().create_task(delete())
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)

    async def close(self) -> None:
        """Wait for pending SQS deletions."""
        if self._deletes:
            await asyncio.gather(*self._deletes, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        """Objects read and (queue mode) messages deleted."""
        return {
            "kind": "s3",
            "objects_read": self.objects_read,
            "messages_deleted": self.messages_deleted,
        }


_SKIP = object()


def _parser(format: Format) -> Callable[[str], Any]:
    if callable(format):
        return format
    if format == "lines":
        return lambda line: line
    if format == "jsonl":
        return lambda line: orjson.loads(line) if line.strip() else _SKIP
    raise DefinitionError(
        f"S3Source: format must be 'lines', 'jsonl' or a function, not {format!r}"
    )


def _hold(countdown: _Countdown | None) -> Callable[[], None] | None:
    return None if countdown is None else countdown.hold()


class _Countdown:
    """Calls ``done`` when every hold is released and the owner has released its own."""

    def __init__(self, done: Callable[[], None]) -> None:
        self._done = done
        self._count = 1  # the owner's hold, released once everything has been offered

    def hold(self) -> Callable[[], None]:
        """One more thing to wait for; returns the callable that releases it."""
        self._count += 1
        return self.release

    def release(self) -> None:
        """Release one hold."""
        self._count -= 1
        if self._count == 0:
            self._done()
