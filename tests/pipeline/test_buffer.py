"""The stage buffers under the races that matter: wake-ups are never lost, close ends workers."""

from __future__ import annotations

import asyncio

from deerflow.pipeline._buffer import Buffer, Signal, StageInput, collect


async def test_a_worker_cancelled_after_being_woken_passes_the_item_to_another():
    buffer: Buffer[int] = Buffer()
    first = asyncio.create_task(buffer.get())
    second = asyncio.create_task(buffer.get())
    await asyncio.sleep(0)
    buffer.put(1)  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs again
    assert await asyncio.wait_for(second, 1) == 1


async def test_close_lets_workers_drain_then_tells_them_it_is_over():
    buffer: Buffer[int] = Buffer()
    waiting = asyncio.create_task(collect(buffer, 10, 5.0))
    await asyncio.sleep(0)
    buffer.put(1)
    buffer.put(2)
    buffer.close()
    assert await asyncio.wait_for(waiting, 1) == [1, 2]  # flushed at close, not at the timeout
    assert await buffer.get() is Signal.CLOSED


def test_one_key_always_goes_to_one_worker_and_keyless_items_are_spread():
    keyed: StageInput[str] = StageInput(4, keyed=True)
    assert len({keyed.route("user-7") for _ in range(20)}) == 1
    assert len({keyed.route(f"user-{n}") for n in range(50)}) == 4
    assert {keyed.route(None) for _ in range(4)} == {0, 1, 2, 3}
