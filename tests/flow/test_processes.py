"""One limit shared by `deerflow worker` processes (SQLite, Kafka), and kept through a kill."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from deerflow import Engine
from tests.flow.apps import shared
from tests.flow.checks import intervals, most_at_once, task_spans
from tests.processes import workers  # noqa: F401 - fixture

APP = Path(__file__).parent / "apps.py"


async def test_processes_share_one_limit_and_kills_of_every_gate_keep_it(store, workers):
    first = workers.start(APP)
    second = workers.start(APP)
    await workers.wait_serving(2)
    async with Engine(store, [shared], orchestrate=False, work=False) as client:
        runs = [await client.start(shared, params={"customer": "c", "n": i}) for i in range(12)]
        other = [await client.start(shared, params={"customer": "d", "n": i}) for i in range(3)]
        done = 0
        while done < 3:  # the first runs ended: the gates hold some runs, queue others
            states = await asyncio.gather(*(run.status() for run in runs))
            done = sum(s.status == "completed" for s in states)
            await asyncio.sleep(0.2)
        first.send_signal(signal.SIGKILL)  # its gate's partitions and its runs move
        first.wait(timeout=10)
        replacement = workers.start(APP)
        while done < 6:
            states = await asyncio.gather(*(run.status() for run in runs))
            done = sum(s.status == "completed" for s in states)
            await asyncio.sleep(0.2)
        for victim in (second, replacement):  # every gate dies: the next are rebuilt from the log
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
        workers.start(APP)
        workers.start(APP)
        results = await asyncio.gather(*(run.result(timeout=240) for run in [*runs, *other]))
        spans = await intervals(client)
        ran = await task_spans(client)
    assert [r.status for r in results] == ["completed"] * 15, workers.logs()
    assert [r.output for r in results] == [*range(12), *range(3)]
    assert len(spans["shared/c"]) == 12
    assert most_at_once(spans["shared/c"]) == 3  # never more, across processes and the kill
    assert most_at_once(spans["shared/d"]) == 3
    for admitted, end, run_id in spans["shared/c"]:  # the attempt kept ran while admitted
        assert admitted <= ran[run_id][0] <= ran[run_id][1] <= end
