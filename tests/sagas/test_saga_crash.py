"""A worker killed with SIGKILL during the rollback: after a restart the rollback completes once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from tests.engine.apps.sink import Sink
from tests.processes import wait_for_file, workers  # noqa: F401 - fixture

APP = Path(__file__).parent / "apps" / "saga_app.py"


async def test_a_kill_during_compensation_then_restart_rolls_back_exactly_once(store, workers):
    hold, started = Path(os.environ["HOLD_FILE"]), Path(os.environ["STARTED_FILE"])
    hold.write_text("hold")
    workflows, wf = load_module_workflows(str(APP))
    assert wf is not None
    victim = workers.start(APP)
    async with Engine(store, workflows, orchestrate=False, work=False) as client:
        handle = await client.start(wf)
        await wait_for_file(started, timeout=60, pool=workers)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        hold.unlink()
        workers.start(APP)
        result = await handle.result(timeout=90)
    assert result.status == "compensated"
    sink = Sink(os.environ["SINK_DB"])
    rid = handle.run_id
    assert sink.effects() == 4  # reserve, charge, refund, release: each once
    assert sink.executions(f"{rid}/refund_payment") == 1
    assert sink.executions(f"{rid}/release_inventory") == 1
    assert sink.executions(f"{rid}/charge_payment") == 1
