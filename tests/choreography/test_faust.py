"""A Faust agent in the choreography, on Kafka: it reacts to deerflow's events and deerflow's
handlers and Kafka triggers react to its events."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deerflow import Engine, EventStore, Workflow, publish_event, publish_event_async
from deerflow.connectors import sources_for
from deerflow.engine import Topics
from deerflow.events import KafkaEvent
from deerflow.eventstore import partition_for
from tests.choreography.processes import Processes, child_env
from tests.choreography.test_choreography import APPS, chain_of, eventually
from tests.services import unique_name

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


@pytest.fixture
def faust_worker(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Processes]:
    monkeypatch.setenv("DEERFLOW_PREFIX", unique_name("faust"))
    pool = Processes(child_env(DEERFLOW_KAFKA_BOOTSTRAP=kafka_bootstrap), tmp_path)
    # --without-web: `faust worker` serves on port 6066 even with web_enabled=False, so two
    # workers on one machine (parallel test runs) would collide.
    pool.start([str(APPS / "fraud_faust.py"), "worker", "--without-web", "--loglevel", "info"])
    yield pool
    pool.stop_all()


def workflows(approved: list[str]) -> list[Workflow]:
    orders = Workflow(name="orders")

    @orders.event_handler("FraudCleared")
    def approve(event):
        approved.append(event.id)
        publish_event("OrderApproved", event.data)

    review = Workflow(name="fraud_review")
    review.add_trigger(
        KafkaEvent(
            topic=Topics.from_env().events,
            consumer_group=unique_name("review"),
            filter=lambda message: message["type"] == "FraudCleared",
            dedupe_key=lambda message: message["id"],
        )
    )

    @review.task(id="file")
    def file(context):
        return {"event": context.trigger_event.message["id"]}

    return [orders, review]


async def test_faust_reacts_to_deerflow_events_and_deerflow_to_faust_events(
    kafka_url, faust_worker
):
    approved: list[str] = []
    async with Engine(kafka_url, workflows(approved)) as engine:
        fraud_review = engine.registry.get("fraud_review")
        assert fraud_review is not None
        for source in sources_for(engine, [fraud_review]):
            await engine.add_service(source)
        started = await publish_event_async("OrderStarted", {"order_id": "o-9"}, store=engine)
        async with EventStore(engine) as store:
            try:
                events = await chain_of(store, started.stream, last="OrderApproved")
            except AssertionError:
                seen = [(e.type, e.source) for e in await store.read_async(started.stream)]
                raise AssertionError(f"chain incomplete: {seen}\n{faust_worker.logs()}") from None
        runs = await eventually(
            lambda: engine.list_runs(workflow="fraud_review", status="completed"), within=60
        )
        count = await engine.log.partition_count(engine.topics.events)
    assert [e.type for e in events] == ["OrderStarted", "FraudCleared", "OrderApproved"], (
        faust_worker.logs()
    )
    started, cleared, approved_event = events
    assert {e.correlation_id for e in events} == {started.id}
    assert cleared.causation_id == started.id and approved_event.causation_id == cleared.id
    assert (
        cleared.source is not None
        and cleared.source.startswith("faust:")
        and cleared.sequence is None
    )
    assert cleared.partition == partition_for(started.stream, count) == started.partition
    assert approved == [cleared.id], "Faust's second copy was not handled again"
    assert [run.output for run in runs] == [{"event": cleared.id}]
    assert os.environ["DEERFLOW_PREFIX"] in engine.topics.events
