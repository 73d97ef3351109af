"""The spec's chain across processes on Kafka: each service is a ``deerflow worker`` of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deerflow import Engine, EventStore
from deerflow.cli._loader import load_module_workflows
from tests.choreography.processes import Processes, child_env
from tests.choreography.test_choreography import APPS, CHAIN, chain_of
from tests.services import unique_name

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


@pytest.fixture
def processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Processes]:
    monkeypatch.setenv("DEERFLOW_PREFIX", unique_name("chain"))
    pool = Processes(child_env(), tmp_path)  # env read at each start
    yield pool
    pool.stop_all()


async def test_the_chain_runs_across_two_worker_processes_under_one_correlation_id(
    kafka_url, processes
):
    orders = processes.worker(APPS / "spec_app.py", kafka_url)
    # Loads the spec's workflow too, but runs only the services' handlers.
    processes.env["DEERFLOW_HANDLERS"] = "order_services.*"
    services = processes.worker(APPS / "services_app.py", kafka_url)
    workflows, spec = load_module_workflows(str(APPS / "spec_app.py"))
    assert spec is not None
    async with Engine(kafka_url, workflows, orchestrate=False, work=False) as client:
        handle = await client.start(spec, params={"order_id": "o-7", "amount": 42})
        run = await handle.result(timeout=120)
        failed = {t: task.error for t, task in run.tasks.items() if task.error}
        assert run.status == "completed", f"{run.error} {failed}\n{processes.logs()}"
        async with EventStore(client) as store:
            events = await chain_of(store, run.run_id)
    assert [e.type for e in events] == CHAIN, processes.logs()
    assert {e.correlation_id for e in events} == {run.run_id}
    assert [e.causation_id for e in events[1:]] == [e.id for e in events[:-1]]
    publishers = [int(str(e.source).rsplit(":", 1)[1]) for e in events]
    # The spec's handlers ran in one worker, the services in the other; start_order (a task)
    # ran in whichever worker took it from the shared task queue.
    assert publishers[0] in (orders.pid, services.pid)
    assert publishers[1:] == [services.pid, orders.pid, services.pid, orders.pid]
    assert events[-1].data == {
        "order_id": "o-7",
        "amount": 42,
        "inventory_pid": services.pid,
        "payment_pid": services.pid,
    }
    assert os.getpid() not in publishers
