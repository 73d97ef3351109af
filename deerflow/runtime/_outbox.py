"""The orchestrator's outbox: decided messages appended in order by one flusher (group commit).

The loop decides from states that already include what it decided, so it need not wait for
each append: it submits the messages and goes on, and everything submitted while an append is
in flight goes out in the next one. Submissions are numbered; :attr:`Outbox.appended` is the
number up to which every submission is durable, and ``on_durable`` is called whenever it moves.

A failed append may or may not have been written. From then on the outbox is *untrusted*:
``appended`` stops moving (no run is evicted and no waiter is answered from a state the log
may not hold) until the owner has read its partitions again and calls :meth:`Outbox.trust`.

A message larger than the log takes in one record (``EventLog.max_value_bytes``) would fail
every append it is in, forever: :meth:`Outbox.submit` gives it to ``refuse`` instead, which
returns the history event that takes its place (the failure of its task or run), or ``None``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from deerflow.log.base import EventLog, Message

log = logging.getLogger("deerflow.orchestrator")

#: Given a message too large for the log: the messages that take its place (none: dropped).
Refuse = Callable[[Message], list[Message]]


class Outbox:
    """Group commit of an orchestrator's decided messages; see the module docstring.

    Args:
        log: the event log appended to.
        on_durable: called with :attr:`appended` each time it moves.
        refuse: called with each message too large for the log (see the module docstring).
    """

    def __init__(
        self, log: EventLog, on_durable: Callable[[int], None], refuse: Refuse | None = None
    ) -> None:
        self._log = log
        self._on_durable = on_durable
        self._refuse = refuse
        self._submitted = 0  # submissions queued so far
        self._appended = 0  # submissions durably appended (all of them up to this one)
        self._dispatches: list[Message] = []
        self._history: list[Message] = []
        self._flusher: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._untrusted = False
        #: set (and replaced) each time :attr:`appended` moves or an append fails
        self._moved = asyncio.Event()

    @property
    def appended(self) -> int:
        """The submission up to which everything is durable."""
        return self._appended

    @property
    def submitted(self) -> int:
        """The number of the newest submission."""
        return self._submitted

    async def durable(self, upto: int) -> bool:
        """Wait until submission ``upto`` and every one before it are durable; ``False`` if an
        append failed first (they may never be). Unlike :meth:`drain`, later submissions are
        not waited for: under steady traffic the outbox is never empty."""
        while self._appended < upto:
            if self._untrusted:
                return False
            if self.idle:
                self.settle()  # submissions without messages: nothing to append
                if self._appended >= upto or self._untrusted:
                    break
                await asyncio.sleep(0.001)  # a submission being queued gets its flusher
                continue
            moved = self._moved
            await moved.wait()
        return not self._untrusted

    @property
    def untrusted(self) -> bool:
        """Whether an append failed since the last :meth:`trust`."""
        return self._untrusted

    @property
    def failed(self) -> bool:
        """Whether an append failed and :meth:`drain` has not raised it yet."""
        return self._error is not None

    @property
    def backlog(self) -> int:
        """Messages submitted and not appended yet."""
        return len(self._dispatches) + len(self._history)

    @property
    def idle(self) -> bool:
        """Whether no append is in flight."""
        return self._flusher is None or self._flusher.done()

    def submit(self, dispatches: list[Message], history: list[Message]) -> int:
        """Queue decided messages; returns the submission's number.

        Dispatches go before the history events that record them (in the same append when
        the log's appends are all-or-nothing).
        """
        self._submitted += 1
        dispatches, history = self._within_limit(dispatches, history)
        self._dispatches.extend(dispatches)
        self._history.extend(history)
        if (self._dispatches or self._history) and self.idle:
            self._flusher = asyncio.create_task(self._flush(), name="deerflow-orchestrator-flush")
        return self._submitted

    def _within_limit(
        self, dispatches: list[Message], history: list[Message]
    ) -> tuple[list[Message], list[Message]]:
        """``dispatches`` and ``history`` with each message too large for the log refused.

        A refused history event's replacement takes its place; a refused dispatch's goes after
        the history events, which include the one that scheduled it.
        """
        limit = self._log.max_value_bytes
        if limit is None or all(len(m.value) <= limit for m in (*dispatches, *history)):
            return dispatches, history
        kept: list[Message] = []
        after: list[Message] = []
        for message in dispatches:
            if len(message.value) <= limit:
                kept.append(message)
            else:
                after.extend(self._replace(message))
        events = [r for m in history for r in ([m] if len(m.value) <= limit else self._replace(m))]
        return kept, events + after

    def _replace(self, message: Message) -> list[Message]:
        replacement = self._refuse(message) if self._refuse is not None else []
        if not replacement:
            log.error(
                "dropping a %s record (key %r) of %d bytes: more than the log takes in one",
                message.topic,
                message.key,
                len(message.value),
            )
        return replacement

    def trust(self) -> None:
        """Every owned state was read again from the log: appends count again."""
        self._untrusted = False

    async def _flush(self) -> None:
        while self._dispatches or self._history:
            submitted = self._submitted  # every submission up to this one is in this batch
            dispatches, history = self._dispatches, self._history
            self._dispatches, self._history = [], []
            try:
                if self._log.atomic_appends:  # one transaction, one fsync, nothing half-written
                    await self._log.append(dispatches + history)
                else:  # the dispatches are durable before the events that record them
                    if dispatches:
                        await self._log.append(dispatches)
                    if history:
                        await self._log.append(history)
            except Exception as exc:
                self._error = exc
                self._untrusted = True
                self._dispatches, self._history = [], []
                self._wake()
                return
            if not self._untrusted:  # after a failed append, only a rebuild is trusted
                self._appended = submitted
                self._on_durable(submitted)
                self._wake()
        self.settle()

    def settle(self) -> None:
        """Nothing is waiting to be appended: every submission so far is durable.

        (Submissions without messages need no append, so the flusher alone does not count
        them.) Called when the flusher is idle or finishing.
        """
        if not self._untrusted and self.backlog == 0 and self._appended < self._submitted:
            self._appended = self._submitted
            self._on_durable(self._appended)
            self._wake()

    def _wake(self) -> None:
        """Wake the :meth:`durable` waiters: what is durable moved, or an append failed."""
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def drain(self) -> None:
        """Wait until everything submitted so far is appended; raise what a failed append raised."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})
        error, self._error = self._error, None
        if error is not None:
            raise error
