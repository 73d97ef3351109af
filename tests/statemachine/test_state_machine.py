"""The spec's order state machine: durable instances whose history is their transitions."""

# mypy: disable-error-code="name-defined"
# (the spec's samples as written: their class bodies use names the metaclass provides)

from __future__ import annotations

import asyncio
import itertools

import pytest

from deerflow import (
    DefinitionError,
    Engine,
    State,
    StateMachine,
    TaskError,
    Transition,
    TransitionNotAllowed,
    Workflow,
)


def order_machine(sent: list[tuple[str, object]], fail_ship: list[int] | None = None) -> Workflow:
    """The spec's sample as written (with its helper functions supplied)."""

    def send_confirmation_email(order):
        sent.append(("email", order["id"]))

    def notify_customer(order, what):
        if fail_ship and fail_ship[0] > 0:
            fail_ship[0] -= 1
            raise ConnectionError("mail relay down")
        sent.append((what, order["id"]))

    def refund_payment(order):
        sent.append(("refund", order["id"]))

    workflow = Workflow(name="order_state_machine")

    @workflow.state_machine
    class OrderStateMachine(StateMachine):
        retry_delay = 0.01

        # Define states
        pending = State(initial=True)
        confirmed = State()
        processing = State()
        shipped = State()
        delivered = State(final=True)
        cancelled = State(final=True)

        # Define transitions
        confirm = Transition(source=pending, target=confirmed)
        start_processing = Transition(source=confirmed, target=processing)
        ship = Transition(source=processing, target=shipped)
        deliver = Transition(source=shipped, target=delivered)
        cancel = Transition(source=[pending, confirmed], target=cancelled)

        # Transition handlers
        @on_transition(confirm)
        def on_confirm(self, context):
            send_confirmation_email(context.order)

        @on_transition(ship)
        def on_ship(self, context):
            notify_customer(context.order, "shipped")

        @on_transition(cancel)
        def on_cancel(self, context):
            refund_payment(context.order)

    return workflow


async def test_an_instance_moves_through_its_states_and_completes_in_a_final_one(store):
    sent: list[tuple[str, object]] = []
    wf = order_machine(sent)
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf, input={"order": {"id": "o-1"}})
        await engine.send(handle.run_id, "confirm")
        assert (await engine.get_run(handle.run_id)).state == "confirmed"
        for transition in ("start_processing", "ship", "deliver"):
            await engine.send(handle.run_id, transition)
        result = await handle.result(timeout=30)
    assert result.status == "completed" and result.state == "delivered"
    assert sent == [("email", "o-1"), ("shipped", "o-1")]
    assert [t["target"] for t in result.transitions] == [
        "pending",
        "confirmed",
        "processing",
        "shipped",
        "delivered",
    ]


async def test_an_invalid_transition_raises_and_changes_nothing(store):
    sent: list[tuple[str, object]] = []
    wf = order_machine(sent)
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf, input={"order": {"id": "o-2"}})
        await engine.index.wait(handle.run_id, lambda s: s.machine_state == "pending", 30)
        with pytest.raises(TransitionNotAllowed, match="not allowed from state 'pending'"):
            await engine.send(handle.run_id, "ship")
        with pytest.raises(TransitionNotAllowed, match="no transition 'teleport'"):
            await engine.send(handle.run_id, "teleport")
        after = await engine.get_run(handle.run_id)
    assert after.state == "pending" and after.status == "running"
    assert sent == []


async def test_a_request_sent_before_the_instance_entered_its_initial_state_is_applied(store):
    # A client that does not orchestrate starts the instance: nobody enters its initial
    # state until an owner starts, so the request meets an instance with no state yet.
    sent: list[tuple[str, object]] = []
    wf = order_machine(sent)
    async with Engine(store, [wf], orchestrate=False) as client:
        handle = await client.start(wf, input={"order": {"id": "o-5"}})
        assert (await client.get_run(handle.run_id)).state is None
        await client.send(handle.run_id, "confirm", wait=False)
        with pytest.raises(TransitionNotAllowed, match="not allowed from state 'pending'"):
            await client.send(handle.run_id, "ship", wait=False)
    async with Engine(store, [wf]) as owner:
        await owner.index.wait(handle.run_id, lambda s: s.machine_state == "confirmed", 30)
    assert sent == [("email", "o-5")]


async def test_concurrent_requests_are_serialised_into_one_consistent_history(store):
    sent: list[tuple[str, object]] = []
    wf = order_machine(sent)
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf, input={"order": {"id": "o-3"}})
        await engine.index.wait(handle.run_id, lambda s: s.machine_state == "pending", 30)
        outcomes = await asyncio.gather(
            engine.send(handle.run_id, "confirm"),
            engine.send(handle.run_id, "cancel"),
            return_exceptions=True,
        )
        final = await engine.get_run(handle.run_id)
    # Whichever the log ordered first, cancel is allowed from pending and from confirmed.
    assert final.state == "cancelled" and final.status == "completed"
    applied = [t for t in final.transitions if t["status"] == "applied"]
    for before, after in itertools.pairwise(applied):
        assert after["source"] == before["target"]  # each step starts where the last ended
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, TransitionNotAllowed) for o in refused)
    assert len(applied) + len(refused) == 3  # start + both requests, each accounted for
    assert ("refund", "o-3") in sent


async def test_a_failing_handler_retries_then_leaves_the_instance_in_its_source_state(store):
    sent: list[tuple[str, object]] = []
    wf = order_machine(sent, fail_ship=[10])
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf, input={"order": {"id": "o-4"}})
        await engine.index.wait(handle.run_id, lambda s: s.machine_state == "pending", 30)
        await engine.send(handle.run_id, "confirm")
        await engine.send(handle.run_id, "start_processing")
        with pytest.raises(TaskError, match="mail relay down"):
            await engine.send(handle.run_id, "ship")
        after = await engine.get_run(handle.run_id)
    assert after.state == "processing"
    assert after.transitions[-1]["status"] == "failed"
    assert after.tasks[next(t for t in after.tasks if t.startswith("ship@"))].attempts == 4


async def test_instances_are_listed_by_their_current_state(store):
    wf = order_machine([])
    async with Engine(store, [wf]) as engine:
        first = await engine.start(wf, input={"order": {"id": "a"}})
        second = await engine.start(wf, input={"order": {"id": "b"}})
        await engine.index.wait(first.run_id, lambda s: s.machine_state == "pending", 30)
        await engine.index.wait(second.run_id, lambda s: s.machine_state == "pending", 30)
        await engine.send(second.run_id, "confirm")
        pending = await engine.list_runs(workflow=wf.name, state="pending")
        confirmed = await engine.list_runs(workflow=wf.name, state="confirmed")
    assert [r.run_id for r in pending] == [first.run_id]
    assert [r.run_id for r in confirmed] == [second.run_id]


async def test_an_instance_survives_a_restart_of_the_engine(store):
    if store.startswith("memory"):
        pytest.skip("nothing survives a memory store's engine... except its process")
    sent: list[tuple[str, object]] = []
    wf = order_machine(sent)
    async with Engine(store, [wf]) as engine:
        handle = await engine.start(wf, input={"order": {"id": "o-5"}})
        await engine.index.wait(handle.run_id, lambda s: s.machine_state == "pending", 30)
        await engine.send(handle.run_id, "confirm")
    async with Engine(store, [wf]) as engine:
        assert (await engine.get_run(handle.run_id)).state == "confirmed"
        await engine.send(handle.run_id, "cancel")
        result = await handle.__class__(engine, handle.run_id, wf.name).result(timeout=30)
    assert result.status == "completed" and result.state == "cancelled"
    assert sent == [("email", "o-5"), ("refund", "o-5")]


def _machine(body: dict[str, Any]) -> type:
    return type("Broken", (StateMachine,), body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"a": State(), "b": State()}, "exactly one initial state"),
        ({"a": State(initial=True), "b": State(initial=True)}, "exactly one initial state"),
        ({"a": State(initial=True), "z": State()}, "unreachable states \\['z'\\]"),
    ],
)
def test_invalid_machines_fail_when_defined(body, message):
    with pytest.raises(DefinitionError, match=message):
        _machine(body)


def test_transitions_from_final_states_and_unknown_handlers_fail_when_defined():
    a, b = State(initial=True), State(final=True)
    with pytest.raises(DefinitionError, match="leaves final state 'b'"):
        _machine(
            {
                "a": a,
                "b": b,
                "go": Transition(source=a, target=b),
                "back": Transition(source=b, target=a),
            }
        )
    other = Transition(source=State(), target=State())
    with pytest.raises(DefinitionError, match="not part of this machine"):

        class Machine(StateMachine):
            start = State(initial=True)
            end = State(final=True)
            finish = Transition(source=start, target=end)

            @on_transition(other)
            def handler(self, context): ...
