"""The background-service base every loop of the runtime and the triggers starts and stops by.

What a user relies on: starting twice runs one loop, stopping is safe at any time and twice,
``async with`` stops what it started, and a loop that dies says so instead of vanishing.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from deerflow.runtime import BackgroundService


class Counting(BackgroundService):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.opened = self.closed = self.loops = 0
        self.fail = fail

    async def _open(self) -> None:
        self.opened += 1

    async def _run(self) -> None:
        self.loops += 1
        if self.fail:
            raise RuntimeError("the source went away")
        await asyncio.Event().wait()

    async def _close(self) -> None:
        self.closed += 1


class Graceful(Counting):
    graceful_stop = True

    async def _run(self) -> None:
        self.loops += 1
        await self.stopping.wait()
        self.finished = True  # the batch in hand is finished, not cut short


async def test_starting_twice_opens_and_runs_one_loop_and_stopping_twice_closes_once_more():
    service = Counting()
    await service.start()
    await service.start()
    await asyncio.sleep(0)
    assert (service.opened, service.loops, service.running) == (1, 1, True)
    await service.stop()
    await service.stop()
    assert service.running is False
    assert service.closed == 2  # closing is idempotent in each service: nothing left to close


async def test_stop_before_start_is_safe_and_the_service_starts_after_it():
    service = Counting()
    await service.stop()
    await service.start()
    await asyncio.sleep(0)
    assert service.running and service.loops == 1
    await service.stop()


async def test_async_with_stops_the_loop_it_started():
    async with Counting() as service:
        await asyncio.sleep(0)
        assert service.running
    assert not service.running


async def test_a_graceful_service_lets_its_loop_finish_instead_of_cancelling_it():
    service = Graceful()
    await service.start()
    await asyncio.sleep(0)
    await service.stop()
    assert service.finished


async def test_a_dead_loop_is_logged_when_it_dies_and_raised_by_stop(caplog):
    service = Counting(fail=True)
    with caplog.at_level(logging.ERROR, logger="deerflow.runtime"):
        await service.start()
        await asyncio.sleep(0.01)
    assert not service.running
    assert isinstance(service.failure, RuntimeError)
    assert "the loop failed" in caplog.text
    with pytest.raises(RuntimeError, match="the source went away"):
        await service.stop()
    assert service.closed == 1  # closed before the failure is raised
