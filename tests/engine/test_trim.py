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


def test_a_trim_is_due_once_enough_work_is_over_and_not_too_often():
    now = [0.0]
    trimmer = Trimmer(after=100, interval=10.0, quiet_for=2.0, clock=lambda: now[0])
    trimmer.enabled = True
    trimmer.worked(99)
    now[0] = 20.0
    assert not trimmer.due()  # not enough work
    trimmer.worked(1)
    now[0] = 21.0
    assert not trimmer.due()  # the work is not over yet
    now[0] = 22.0
    assert trimmer.due()
    asyncio.run(trimmer.quiet())
    assert trimmer.trims == 1 and not trimmer.due()
    trimmer.worked(500)
    now[0] = 30.0
    assert not trimmer.due()  # too soon after the last one
    now[0] = 32.0
    assert trimmer.due()
    trimmer.worked(1)  # busy again: wait for the quiet
    assert not trimmer.due()


def test_a_disabled_trimmer_never_trims():
    trimmer = Trimmer(after=1, interval=0.0)
    trimmer.enabled = False
    trimmer.worked(10_000)
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
        orchestrator.trimmer.after = 200  # history records folded: 100 runs write more
        runs = await asyncio.gather(*(engine.start(wf, params={"n": n}) for n in range(100)))
        results = await asyncio.gather(*(run.result(timeout=60) for run in runs))
        await until(lambda: orchestrator.trimmer.trims >= 1, timeout=30)
        trims = orchestrator.trimmer.trims
        await asyncio.sleep(1.0)  # quiet, without new work: no trim again
        assert orchestrator.trimmer.trims == trims
    assert [r.output for r in results] == list(range(100))
