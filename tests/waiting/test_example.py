"""examples/sleep_and_signals.py as a user runs it: from the shell, and signalled."""

from __future__ import annotations

import asyncio

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from tests.example_runs import EXAMPLES, deerflow_run

EXAMPLE = EXAMPLES / "sleep_and_signals.py"


def test_unanswered_the_approval_times_out_and_the_invoice_is_escalated(tmp_path):
    result = deerflow_run("sleep_and_signals.py:invoice_approval", tmp_path, "invoice=INV-7")
    assert result["output"] == {"invoice": "INV-7", "booked": False, "escalated_to": "finance"}
    assert result["tasks"]["approval"]["output"] is None


async def test_signalled_while_it_cools_down_the_invoice_is_booked(tmp_path):
    workflows, _ = load_module_workflows(f"{EXAMPLE}:invoice_approval")
    (wf,) = workflows
    async with Engine(f"sqlite:///{tmp_path / 'deerflow.db'}", [wf]) as engine:
        handle = await engine.start(wf, params={"invoice": "INV-8"})
        await asyncio.sleep(0.2)
        await engine.signal(handle.run_id, "approve", {"by": "ann"})
        result = await handle.result(timeout=60)
    assert result.output == {"invoice": "INV-8", "booked": True, "approved_by": "ann"}
