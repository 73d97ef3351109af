"""A run waits for a domain event matching it: on memory, SQLite and Kafka."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from deerflow import CancelOn, DefinitionError, Engine, Workflow
from deerflow.choreography import publish_event_async
from deerflow.core import history as h
from deerflow.core.state import waits_of
from deerflow.events import KafkaEvent, Schedule
from deerflow.log.base import Message
from deerflow.matching import EventMatched, Matcher
from deerflow.web import _graph as graph
from tests.logs import history
from tests.matching.waits import invoices, payments, until_waiting
from tests.rebuilding import member_of, until


async def test_an_event_resumes_the_run_it_matches_once_however_often_delivered(store):
    wf = invoices()
    async with Engine(store, [wf]) as engine:
        runs = [await engine.start(wf, params={"invoice_id": f"inv-{i}"}) for i in range(3)]
        await until_waiting(engine, *runs)
        approved = await publish_event_async(
            "InvoiceApproved", {"invoice_id": "inv-1", "by": "ann"}, store=engine
        )
        # The same event again (a redelivery), then a second approval of the same invoice.
        await publish_event_async(
            "InvoiceApproved", {"invoice_id": "inv-1", "by": "ann"}, store=engine, id=approved.id
        )
        await publish_event_async(
            "InvoiceApproved", {"invoice_id": "inv-1", "by": "bob"}, store=engine
        )
        result = await runs[1].result(timeout=60)
        await asyncio.sleep(0.5)  # time for any extra resume to land
        events = await history(engine, runs[1].run_id)
        others = [await run.status() for run in (runs[0], runs[2])]
    assert result.status == "completed", result.error
    assert result.output in ("ann", "bob")
    event = result.tasks["approval"].output
    assert event["type"] == "InvoiceApproved"
    assert event["data"]["invoice_id"] == "inv-1"
    assert set(event) >= {"id", "type", "data", "time", "source"}
    assert [e.task_id for e in events if isinstance(e, h.TaskCompleted)] == ["request", "book"]
    # The other runs wait on: their invoices were not approved.
    assert [o.tasks["approval"].status for o in others] == ["waiting", "waiting"]
    assert [o.status for o in others] == ["running", "running"]
    matched = [e for e in events if isinstance(e, EventMatched)]
    assert matched and matched[0].id == f"{runs[1].run_id}:approval:1:wait:{event['id']}"


async def test_a_wait_times_out_with_none_or_fails(store):
    lenient = invoices("lenient", timeout=1)
    strict = invoices("strict", timeout=1, on_timeout="fail")
    async with Engine(store, [lenient, strict]) as engine:
        first = await engine.start(lenient, params={"invoice_id": "inv-1"})
        second = await engine.start(strict, params={"invoice_id": "inv-2"})
        timed_out, failed = await first.result(timeout=60), await second.result(timeout=60)
    assert timed_out.status == "completed", timed_out.error
    assert timed_out.tasks["approval"].output is None
    assert timed_out.output is None
    assert failed.status == "failed"
    assert failed.failed_task == "approval"
    assert "no InvoiceApproved event within 1s" in (failed.error or "")
    assert failed.tasks["book"].status == "skipped"


async def test_an_event_before_the_wait_matches_only_with_lookback(store):
    plain = invoices("plain", timeout=2)
    looking = invoices("looking", timeout=30, lookback="1h")
    async with Engine(store, [plain, looking]) as engine:
        await publish_event_async(
            "InvoiceApproved", {"invoice_id": "early", "by": "ann"}, store=engine
        )
        await asyncio.sleep(0.5)  # the event is routed before either wait begins
        without = await engine.start(plain, params={"invoice_id": "early"})
        with_lookback = await engine.start(looking, params={"invoice_id": "early"})
        missed, found = await without.result(timeout=60), await with_lookback.result(timeout=60)
    assert missed.status == "completed"
    assert missed.output is None  # timed out: the event came before the wait began
    assert found.status == "completed"
    assert found.output == "ann"


async def test_where_filters_the_events_that_match(store):
    wf = invoices("big", where=lambda event: event["data"]["amount"] >= 100)
    async with Engine(store, [wf]) as engine:
        run = await engine.start(wf, params={"invoice_id": "inv-7"})
        await until_waiting(engine, run)
        for by, amount in (("small", 5), ("large", 500)):
            await publish_event_async(
                "InvoiceApproved", {"invoice_id": "inv-7", "by": by, "amount": amount}, store=engine
            )
        result = await run.result(timeout=60)
    assert result.output == "large"


async def test_cancel_on_cancels_the_run_naming_the_event(store):
    wf = Workflow(
        name="onboarding",
        cancel_on=[CancelOn(event="UserDeleted", match={"data.user": "params.user"})],
    )
    wf.wait_for_event(id="approval", event="Never", timeout="1h")

    @wf.task(id="welcome", depends_on=["approval"])
    def welcome(context):
        return "welcome"

    async with Engine(store, [wf]) as engine:
        kept = await engine.start(wf, params={"user": "ann"})
        gone = await engine.start(wf, params={"user": "bob"})
        await until_waiting(engine, kept, gone)
        deleted = await publish_event_async("UserDeleted", {"user": "bob"}, store=engine)
        result = await gone.result(timeout=60)
        events = await history(engine, gone.run_id)
        still = await kept.status()
    assert result.status == "cancelled"
    assert deleted.id in (result.error or "")
    requested = [e for e in events if e.type == "RunCancelRequested"]
    assert [e.id for e in requested] == [f"{gone.run_id}:cancel_on:0:{deleted.id}"]
    assert result.tasks["welcome"].status == "skipped"
    assert still.status == "running"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"event": "A*"}, "event must be one event type (no '*')"),
        ({"event": "A", "timeout": "soon"}, "timeout: 'soon' is not a duration"),
        ({"event": "A", "match": {"data.x": "run.x"}}, "must be a path in the run"),
        ({"event": "A", "match": {"payload.x": "params.x"}}, "must be a path in the event"),
        ({"event": "A", "match": {"data.x": "tasks.t.output"}}, "'t' must be in depends_on"),
        ({"event": "A", "on_timeout": "explode"}, "on_timeout"),
    ],
)
def test_a_bad_wait_fails_at_definition(options, problem):
    wf = Workflow(name="bad")
    with pytest.raises(DefinitionError, match="workflow 'bad', task 'w'") as caught:
        wf.wait_for_event(id="w", **options)
    assert problem in str(caught.value)


def test_a_bad_cancel_on_fails_at_definition():
    with pytest.raises(DefinitionError, match="cancel_on takes CancelOn"):
        Workflow(name="bad", cancel_on=["UserDeleted"])  # type: ignore[list-item]


async def test_a_timeout_is_kept_across_a_restart(store):
    if store.startswith("memory"):
        pytest.skip("an in-memory store does not outlive its engine")
    wf = invoices(timeout=3)
    async with Engine(store, [wf]) as engine:
        run = await engine.start(wf, params={"invoice_id": "inv-1"})
        # The wait's timer is in the history from the moment it began; a node's "waiting"
        # status can be over before a poll sees it when a loaded machine is slow to poll.
        deadline = time.monotonic() + 60
        while "TimerStarted" not in [e.type for e in await history(engine, run.run_id)]:
            assert time.monotonic() < deadline, "the wait never began"
            await asyncio.sleep(0.05)
    async with Engine(store, [wf]) as engine:
        result = await engine.wait(run.run_id, timeout=60)
        events = await history(engine, run.run_id)
    assert result.status == "completed", result.error
    assert result.tasks["approval"].output is None
    assert [e.type for e in events].count("TimerFired") == 1
    assert [e.type for e in events].count("EventWaitTimedOut") == 1


async def test_a_wait_registered_after_its_run_was_cancelled_resumes_nothing(store):
    wf = invoices(timeout="1h")
    async with Engine(store, [wf]) as engine:
        run = await engine.start(wf, params={"invoice_id": "inv-9"})
        await until_waiting(engine, run)
        # The router reads the history and the events apart, each in order: with the wait in
        # the index before the cancel, and out of it before the event is sent, the event
        # cannot be routed between the two.
        matcher = member_of(engine, Matcher)

        def held() -> int:
            return sum(len(index) for index in matcher.indexes.values())

        async def registered() -> bool:
            return held() == 1

        async def retired() -> bool:
            return held() == 0

        await until(registered, "the run's wait never reached the index")
        await run.cancel()
        cancelled = await run.result(timeout=60)
        await until(retired, "the cancelled run's wait never left the index")
        await publish_event_async(
            "InvoiceApproved", {"invoice_id": "inv-9", "by": "ann"}, store=engine
        )
        await asyncio.sleep(1.0)
        events = await history(engine, run.run_id)
        after = await run.status()
    assert cancelled.status == after.status == "cancelled"
    # The run's end retired its wait from the index: the approval resumes nothing.
    assert not [e for e in events if isinstance(e, EventMatched)]


async def test_every_message_of_a_source_topic_is_an_event_to_wait_for(store):
    wf = payments("payments", "payments-in")
    async with Engine(store, [wf]) as engine:
        run = await engine.start(wf, params={"order": "o-1"})
        await until_waiting(engine, run, node="paid")
        for order in ("o-2", "o-1"):  # a plain JSON message, as another producer writes it
            body = orjson.dumps({"order": order, "amount": 12})
            await engine.log.append([Message(topic="payments-in", key=order, value=body)])
        result = await run.result(timeout=60)
    event = result.tasks["paid"].output
    assert event["type"] == "PaymentReceived"
    assert event["data"] == {"order": "o-1", "amount": 12}
    assert event["source"] == "kafka:payments-in"


def test_a_source_must_be_a_trigger_spec_and_a_topic_of_the_deployment_s_log():
    wf = Workflow(name="bad")
    with pytest.raises(DefinitionError, match=r"source= takes KafkaEvent\(topic=...\), Webhook"):
        wf.wait_for_event(id="w", event="A", source=Schedule(cron="* * * * *"))  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="the deployment's own log"):
        wf.wait_for_event(
            id="w", event="A", source=KafkaEvent(topic="t", bootstrap_servers="elsewhere:9092")
        )


async def test_a_run_without_the_value_to_match_fails_the_node_saying_which(store):
    lenient = Workflow(name="lenient")
    lenient.wait_for_event(id="approval", event="A", match={"data.id": "params.id"})
    async with Engine(store, [lenient]) as engine:
        result = await (await engine.start(lenient, params={})).result(timeout=60)
    assert result.status == "failed"
    assert result.tasks["approval"].error == "match 'data.id': the run has no 'params.id'"


async def test_after_a_restart_the_index_is_rebuilt_and_an_event_resumes_a_wait_from_before(store):
    if store.startswith("memory"):
        pytest.skip("an in-memory store does not outlive its engine")
    wf = invoices(timeout="1h")
    async with Engine(store, [wf]) as engine:
        before = await engine.start(wf, params={"invoice_id": "inv-1"})
        await until_waiting(engine, before)
    async with Engine(store, [wf]) as engine:
        await publish_event_async(
            "InvoiceApproved", {"invoice_id": "inv-1", "by": "ann"}, store=engine
        )
        result = await engine.wait(before.run_id, timeout=60)
    assert result.status == "completed", result.error
    assert result.output == "ann"


async def test_the_dashboard_draws_a_waiting_node_as_waiting():
    wf = invoices(timeout="1h")
    async with Engine("memory://drawn", [wf]) as engine:
        run = await engine.start(wf, params={"invoice_id": "inv-1"})
        await until_waiting(engine, run)
        laid_out = graph.build(await run.status(), wf, {}, {})
    drawn = {n["id"]: (n["status"], n["label"]) for n in laid_out.as_json()["nodes"]}
    assert drawn["approval"] == ("waiting", "wait for event")
    assert '<g class="node st-waiting kind-wait" data-task="approval"' in graph.svg(laid_out)


async def test_a_wait_says_its_event_every_value_it_matches_and_its_filter(store):
    wf = Workflow(name="shipments")
    wf.wait_for_event(
        id="shipped",
        event="OrderShipped",
        match={"data.order_id": "params.order_id", "data.line": "params.line"},
        where=lambda event: event["data"].get("carrier") != "none",
    )
    wf.wait_for_event(id="any", event="Tick", timeout="1h")
    async with Engine(store, [wf]) as engine:
        before = time.time()
        run = await engine.start(wf, params={"order_id": "o-1", "line": 3})
        await until_waiting(engine, run, node="shipped")
        await until_waiting(engine, run, node="any")
        after = time.time()
        state = await engine.index.state(run.run_id)
        assert state is not None
        waits = waits_of(state)
        await engine.cancel(run.run_id)
        ended = await engine.index.wait(run.run_id, lambda s: s.terminal, 30)
    assert waits["shipped"] == {
        "for": "event OrderShipped where data.line = 3 and data.order_id = o-1"
        " (and its where= filter)",
        "deadline": None,
    }
    assert waits["any"]["for"] == "event Tick"
    # an hour from when the wait began, which was between the start and the check
    deadline = waits["any"]["deadline"]
    assert deadline is not None and before + 3600 - 1 <= deadline <= after + 3600 + 1
    assert ended is not None and waits_of(ended) == {}  # an ended run waits for nothing
