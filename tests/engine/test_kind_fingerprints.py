"""Fingerprints record each node's kind by name: the values below are those definitions had
before kinds were objects, so runs in flight keep matching their definitions after an upgrade."""

from __future__ import annotations

from deerflow import CompensatingAction, MapReduce, Saga, Workflow, step
from deerflow.statemachine import State, StateMachine, Transition


def every_kind() -> tuple[Workflow, Workflow]:
    child = Workflow(name="child")
    child.task(id="c")(lambda ctx: 1)
    wf = Workflow(name="every_kind")
    undo = CompensatingAction(lambda ctx, out: None, id="undo_src")
    wf.task(id="src", compensate=undo)(lambda ctx: [1])
    wf.dynamic_tasks(id="dyn", depends_on=["src"])(lambda ctx: [])
    wf.parallel_tasks(id="par", depends_on=["src"])(lambda item, ctx: item)

    @wf.map_reduce(id="mr", depends_on=["src"])
    class Job(MapReduce):
        def partition(self, context):
            return []

        def map(self, partition, context):
            return partition

        def reduce(self, results, context):
            return results

    wf.sub_workflow(id="sub", workflow=child, depends_on=["src"])

    @wf.saga
    class Reserve(Saga):
        @step(order=1)
        def reserve(self, context): ...

        @reserve.compensation
        def release(self, context, out): ...

    return wf, child


def test_every_built_in_kind_keeps_its_fingerprint():
    wf, child = every_kind()
    assert wf.fingerprint() == "9deea4c518f91988"
    assert child.fingerprint() == "78d3451820685938"


def test_a_state_machine_keeps_its_fingerprint():
    machine = Workflow(name="machine")

    @machine.state_machine
    class Flip(StateMachine):
        a = State(initial=True)
        b = State(final=True)
        go = Transition(source=a, target=b)

    assert machine.fingerprint() == "3fe8efd7d50fb316"
