"""After a burst of work the engine gives the allocator's free memory back to the system."""

from __future__ import annotations

import asyncio

import pytest

from deerflow import Engine, Workflow
from deerflow.runtime._trim import Trimmer, malloc_trim, retained_bytes
from tests.logs import until
from tests.rss import rss_mib

glibc = pytest.mark.skipif(not Trimmer().enabled, reason="malloc_trim is glibc's")


@glibc
def test_a_trim_returns_what_was_freed_to_the_system():
    # Blocks over 512 bytes come from malloc, not CPython's arenas; one kept in 50 pins the
    # heap's top, so only a trim can give the free pages between them back.
    blocks = [bytes(600) for _ in range(100_000)]
    kept = blocks[::50]
    del blocks
    before = rss_mib()
    assert malloc_trim()
    after = rss_mib()
    assert before - after > 30, (before, after)
    assert len(kept) == 2000


def test_a_trim_is_due_once_memory_was_freed_and_the_work_is_over_and_not_too_often():
    now, retained = [0.0], [100]
    trimmer = Trimmer(
        growth=50,
        interval=10.0,
        quiet_for=2.0,
        clock=lambda: now[0],
        retained=lambda: retained[0],
    )
    trimmer.enabled = True
    retained[0], now[0] = 150, 20.0
    trimmer.worked(10)
    now[0] = 21.0
    assert not trimmer.due()  # the work is not over yet
    now[0] = 22.0
    assert trimmer.due()
    now[0] = 23.0
    assert not trimmer.due()  # looked a second ago
    now[0] = 40.0
    asyncio.run(trimmer.quiet())
    assert trimmer.trims == 1
    retained[0], now[0] = 150 + 49, 60.0
    assert not trimmer.due()  # not freed enough since the trim
    retained[0], now[0] = 150 + 60, 70.0
    assert trimmer.due()
    trimmer.worked(1)  # busy again: wait for the quiet
    now[0] = 71.0
    assert not trimmer.due()


def test_what_is_retained_counts_the_memory_freed():
    blocks = [bytes(600) for _ in range(20_000)]
    kept = blocks[::50]
    before = retained_bytes()
    del blocks
    assert retained_bytes() >= before - 1_000_000  # freed, not given back: still retained
    assert len(kept) == 400


def test_a_disabled_trimmer_never_trims():
    trimmer = Trimmer(growth=0, interval=0.0, quiet_for=0.0)
    trimmer.enabled = False
    asyncio.run(trimmer.quiet())
    assert trimmer.trims == 0


@glibc
async def test_an_engine_trims_once_its_burst_of_runs_is_over(store):
    wf = Workflow(name="burst")

    @wf.task(id="one")
    def one(context):
        return context.params["n"]

    async with Engine(store, [wf]) as engine:
        orchestrator = engine.orchestrator
        assert orchestrator is not None
        orchestrator.trimmer.interval = orchestrator.trimmer.quiet_for = 0.0
        orchestrator.trimmer.growth = -(1 << 62)  # due whatever was freed
        runs = await asyncio.gather(*(engine.start(wf, params={"n": n}) for n in range(100)))
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        await until(lambda: orchestrator.trimmer.trims >= 1, timeout=30)
        trims = orchestrator.trimmer.trims
        orchestrator.trimmer.growth = 64 << 20
        await asyncio.sleep(1.0)  # quiet, nothing more freed: no trim again
        assert orchestrator.trimmer.trims == trims
    assert [r.output for r in results] == list(range(100))
