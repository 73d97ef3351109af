"""A long-lived instance: its run state keeps a bounded window of event ids, snapshots too."""

from __future__ import annotations

from deerflow import Engine, State, StateMachine, Transition, Workflow
from deerflow.core import repeats
from deerflow.runtime._snapshots import Snapshots


def toggle() -> Workflow:
    """An instance that flips between two states for as long as it is asked to."""
    workflow = Workflow(name="toggle")

    @workflow.state_machine
    class Toggle(StateMachine):
        off = State(initial=True)
        on = State()
        switch_on = Transition(source=off, target=on)
        switch_off = Transition(source=on, target=off)

    return workflow


async def test_an_instance_past_the_window_keeps_at_most_the_bound_and_goes_on(
    tmp_path, monkeypatch
):
    limit = 16  # the window made small, so a short test goes well past it
    monkeypatch.setattr(repeats, "SEEN_LIMIT", limit)
    wf = toggle()
    store = f"sqlite:///{tmp_path / 'events.db'}"
    flips = limit + 10  # a request and its resolution each: past the window twice over
    async with Engine(store, [wf], snapshot_every=10) as engine:
        handle = await engine.start(wf)
        for n in range(flips):
            await engine.send(handle.run_id, ("switch_on", "switch_off")[n % 2])
        count = await engine.log.partition_count(engine.topics.history)
    async with Engine(store, orchestrate=False, work=False) as client:
        images = await Snapshots(client.log, client.topics).load(list(range(count)), count)
    [kept] = [s for image in images.values() for s in image.runs if s.run_id == handle.run_id]
    assert kept.events > 2 * limit and 0 < len(kept.seen) <= limit
    async with Engine(store, [wf], snapshot_every=10) as engine:
        await engine.send(handle.run_id, ("switch_on", "switch_off")[flips % 2])
        run = await engine.get_run(handle.run_id)
    assert run.state == ("on", "off")[flips % 2]
    assert len(run.transitions) == flips + 2  # the start, every flip, the last one: each once
    assert all(t["status"] == "applied" for t in run.transitions)
