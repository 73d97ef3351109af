"""After a burst of work the engine gives the allocator's free memory back to the system."""

from __future__ import annotations

import asyncio

import pytest

from deerflow import Engine, Workflow
from deerflow.runtime._trim import Trimmer, malloc_trim
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


def test_a_trim_is_due_once_the_rss_grew_and_the_work_is_over_and_not_too_often():
    now, rss = [0.0], [100]
    trimmer = Trimmer(
        growth=50, interval=10.0, quiet_for=2.0, clock=lambda: now[0], rss=lambda: rss[0]
    )
    trimmer.enabled = True
    rss[0], now[0] = 149, 20.0
    assert not trimmer.due()  # not grown enough
    rss[0] = 150
    trimmer.worked(10)
    now[0] = 21.0
    assert not trimmer.due()  # the work is not over yet
    now[0] = 22.0
    assert trimmer.due()
    asyncio.run(trimmer.quiet())
    assert trimmer.trims == 1 and not trimmer.due()
    rss[0], now[0] = 150 + 60, 30.0
    assert not trimmer.due()  # too soon after the last one
    now[0] = 32.0
    assert trimmer.due()  # grown by 60 since the trim
    trimmer.worked(1)  # busy again: wait for the quiet
    assert not trimmer.due()


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
        orchestrator.trimmer.growth = 0  # any growth: 100 runs grow the process
        runs = await asyncio.gather(*(engine.start(wf, params={"n": n}) for n in range(100)))
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        await until(lambda: orchestrator.trimmer.trims >= 1, timeout=30)
        trims = orchestrator.trimmer.trims
        orchestrator.trimmer.growth = 64 << 20
        await asyncio.sleep(1.0)  # quiet, without growth: no trim again
        assert orchestrator.trimmer.trims == trims
    assert [r.output for r in results] == list(range(100))
