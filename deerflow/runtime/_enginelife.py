"""The engine's lifecycle: open the store, join the groups, start and stop the services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable

from deerflow._lifecycle import Lifecycle
from deerflow.runtime import _collector
from deerflow.runtime._engineparts import EngineParts
from deerflow.runtime.plugins import Service

__all__ = ["EngineLifecycle"]


class EngineLifecycle(EngineParts, Lifecycle):
    """``open``, ``stop`` and the services started and stopped with the engine; ``async with``
    (from :class:`~deerflow._lifecycle.Lifecycle`) starts the engine and stops it."""

    async def open(self) -> None:
        """Open the store and create deerflow's topics, without joining any group; idempotent.

        What :meth:`start` does first; a server can listen (and say it is starting) from here.
        """
        await self.log.start()
        # Histories, domain events and dead letters are the record: never expire them.
        # Task messages are consumed within seconds: the broker's retention applies.
        for topic in (self.topics.history, self.topics.events, self.topics.dlq):
            await self.log.ensure_topic(topic, self._partitions, keep_forever=True)
        await self.log.ensure_topic(self.topics.tasks, self._partitions)

    async def _start_engine(self, extra: Iterable[Service] = ()) -> None:
        extra = list(extra)
        if self._started and not extra:
            # Every start_run, append_history and wait comes here: once started, no lock and
            # no empty gather (~8 % of the CPU of 10k one-step runs started at once).
            return
        async with self._lock:
            if self._started:
                await self._start_all(extra)
                return
            await self.open()
            # Group joins take seconds each on Kafka: join every group at once. The worker
            # runs nothing until the services are up: a task body may publish through one.
            joins = [] if self.orchestrator is None else [self.orchestrator.start()]
            if self.worker is not None:
                joins.append(self.worker.start(held=True))
            own = [] if self.archiver is None else [self.archiver]
            await self._start_all([*own, *self._take_pending(), *extra], *joins)
            if self.worker is not None:
                self.worker.release()
            self._started = True
            if not self._holds_collector:
                self._holds_collector = True
                _collector.hold()

    async def _start_all(self, services: list[Service], *joins: Awaitable[None]) -> None:
        """Start ``services`` (and ``joins``) concurrently; if one fails, stop them all."""
        try:
            results = await asyncio.gather(
                *joins, *(s.start() for s in services), return_exceptions=True
            )
        except asyncio.CancelledError:
            results = [asyncio.CancelledError()]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            for service in reversed(services):
                with contextlib.suppress(Exception):
                    await service.stop()
            raise failed[0]
        self.services += services

    async def add_service(self, service: Service) -> Service:
        """Start ``service`` now and stop it with the engine."""
        await self.add_services([service])
        return service

    async def add_services(self, services: Iterable[Service]) -> None:
        """Start ``services`` concurrently and stop them with the engine (last added first).

        If the engine is not started yet it starts too, its own group joins alongside: on
        Kafka every join takes seconds, so joining them all at once saves those seconds per
        group. If one fails to start, the others are stopped again and its error raised.
        """
        await self._start_engine(services)

    async def stop(self) -> None:
        """Drain the worker, leave the groups and close the store; idempotent.

        The worker drains first: a task body finishing meanwhile may still publish through a
        service.
        """
        if self._holds_collector:
            self._holds_collector = False
            _collector.release()
        if self.worker is not None:
            await self.worker.stop()
        if self._late:
            await asyncio.gather(*self._late, return_exceptions=True)
        while self.services:
            await self.services.pop().stop()
        if self.orchestrator is not None:
            await self.orchestrator.stop()
        await self.index.stop()
        await self.log.stop()
        self._started = False
