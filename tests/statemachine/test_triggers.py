"""Triggers drive state machines: a webhook creates instances and requests their transitions."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from deerflow import Engine, State, StateMachine, Transition, Workflow
from deerflow.connectors import ApiKeys, WebhookGateway, sources_for
from deerflow.events import WebhookEvent
from tests.services import unique_name


def tickets() -> Workflow:
    workflow = Workflow(name="tickets")
    workflow.add_trigger(WebhookEvent(path="/tickets/events"))

    @workflow.state_machine
    class Ticket(StateMachine):
        open_ = State(initial=True, name="open")
        resolved = State()
        closed = State(final=True)

        resolve = Transition(source=open_, target=resolved)
        close = Transition(source=resolved, target=closed)

        def route(self, event):
            body = event.body
            return (body["ticket"], body["action"]) if "action" in body else None

    return workflow


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str
) -> dict[str, Any]:
    async with session.post(url, json=body, headers={"Idempotency-Key": key}) as reply:
        assert reply.status == 202, await reply.text()
        return await reply.json()


async def test_webhook_events_request_transitions_of_the_instance_they_name(monkeypatch):
    monkeypatch.setenv("DEERFLOW_PREFIX", unique_name("sm").replace("-", ""))
    wf = tickets()
    async with Engine(f"memory://{unique_name('sm')}", [wf]) as engine:
        gateway = WebhookGateway(engine, port=0, api_keys=ApiKeys([]))
        for source in sources_for(engine, [wf], gateway=gateway):
            await engine.add_service(source)
        await engine.add_service(gateway)
        url = gateway.url + "/tickets/events"
        async with aiohttp.ClientSession() as session:
            created = await post(session, url, {"title": "printer"}, "create-1")
            ticket = created["run_id"]
            await engine.index.wait(ticket, lambda s: s.machine_state == "open", 30)
            await post(session, url, {"ticket": ticket, "action": "resolve"}, "ev-1")
            await post(session, url, {"ticket": ticket, "action": "resolve"}, "ev-1")  # again
            await engine.index.wait(ticket, lambda s: s.machine_state == "resolved", 30)
            await post(session, url, {"ticket": ticket, "action": "resolve"}, "ev-2")  # refused
            await post(session, url, {"ticket": ticket, "action": "close"}, "ev-3")
            state = await engine.index.wait(ticket, lambda s: s.terminal, 30)
        letters = await engine.log.read_partitions({tp: 0 for tp in await _dlq_partitions(engine)})
    assert state is not None and state.machine_state == "closed"
    applied = [t["transition"] for t in state.transitions if t["status"] == "applied"]
    assert applied == ["", "resolve", "close"]  # the repeated delivery is one request
    reasons = [json.loads(r.value)["reason"] for batch in letters.values() for r in batch]
    assert any("not allowed from state 'resolved'" in reason for reason in reasons)


async def _dlq_partitions(engine: Engine):
    from deerflow.eventstore.base import TopicPartition

    count = await engine.log.partition_count(engine.topics.dlq)
    return [TopicPartition(engine.topics.dlq, p) for p in range(count)]
