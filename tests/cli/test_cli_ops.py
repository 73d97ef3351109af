"""``deerflow runs|events|dlq`` as a user runs them: real processes on a store that a running
engine (orchestrator and worker, in this test's process) shares with them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import pytest

import deerflow._codec as _codec
from deerflow.choreography import publish_event_async
from deerflow.log.base import Message
from tests.cli.conftest import Shell


async def test_a_failed_run_is_listed_shown_and_retried_from_the_shell(shell: Shell):
    run_id = (await shell.engine.start("etl")).run_id
    assert await shell.ended(run_id) == "failed"

    listed = await shell.json("runs", "list", "--status", "failed")
    assert [r["run_id"] for r in listed] == [run_id]
    assert listed[0]["failed_task"] == "fragile" and listed[0]["trigger"] == "manual"
    code, table, _ = await shell.run("runs", "list", "--workflow", "etl")
    assert code == 0 and run_id in table and "failed" in table

    shown = await shell.json("runs", "show", run_id[:10])  # a unique prefix is enough
    assert shown["result"]["run_id"] == run_id
    assert shown["child_runs"] == {"validate": [f"{run_id}.validate.1"]}
    assert shown["attempts"]["fragile"][0]["error_type"] == "NonRetryableError"
    assert shown["history"][-1]["type"] == "RunFailed"
    code, text, _ = await shell.run("runs", "show", run_id, "--history")
    assert code == 0 and "refused the batch" in text and "TaskAbandoned" in text

    (shell.flags / "fixed").touch()
    code, out, err = await shell.run("runs", "retry", run_id, "--follow", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "run_id": run_id,
        "action": "retry",
        "retry": 1,
        "status": "completed",
    }
    result = await shell.engine.get_run(run_id)
    assert result.tasks["fragile"].attempts == 2 and result.tasks["split"].attempts == 1


async def test_follow_draws_progress_until_the_run_completes(shell: Shell):
    run_id = (await shell.engine.start("waiting")).run_id
    follow = asyncio.create_task(shell.run("runs", "show", run_id, "--follow"))
    await shell.engine.index.wait(run_id, lambda s: "wait" in s.tasks, 30.0)
    await asyncio.sleep(1.0)  # the follower has drawn the running state meanwhile
    (shell.flags / "release").touch()
    code, _, err = await follow
    assert code == 0, err
    assert "after" in err and "completed" in err and "━" in err  # the task table with bars


async def test_cancel_and_the_errors_an_operator_meets(shell: Shell, tmp_path: Path):
    run_id = (await shell.engine.start("waiting")).run_id
    await shell.engine.index.wait(run_id, lambda s: "wait" in s.tasks, 30.0)
    assert await shell.json("runs", "cancel", run_id) == {
        "run_id": run_id,
        "action": "cancel",
        "requested": True,
    }
    assert await shell.ended(run_id) == "cancelled"
    (shell.flags / "release").touch()

    code, _, err = await shell.run("runs", "cancel", run_id)
    assert code == 2 and "already ended (cancelled)" in err
    code, _, err = await shell.run("runs", "retry", run_id)
    assert code == 2 and "only failed runs can be retried" in err
    code, _, err = await shell.run("runs", "show", "no-such-run")
    assert code == 2 and "no run 'no-such-run'" in err and shell.store in err
    code, _, err = await shell.run("runs", "list", store="kafka://127.0.0.1:1")
    assert code == 2 and "cannot reach Kafka at kafka://127.0.0.1:1" in err
    missing = tmp_path / "nowhere.db"
    code, _, err = await shell.run("runs", "list", store=f"sqlite:///{missing}")
    assert code == 2 and "no store at" in err and not missing.exists()


async def test_events_tail_prints_a_runs_history_and_follows_new_records(shell: Shell):
    run_id = (await shell.engine.start("etl")).run_id
    await shell.ended(run_id)
    code, out, _ = await shell.run("events", "tail", "--run", run_id, "-n", "3", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == 3
    assert {r["key"] for r in records} == {run_id}
    assert records[-1]["value"]["type"] == "RunFailed"

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "deerflow",
        "events",
        "tail",
        "-f",
        "-n",
        "0",
        "--json",
        "--store",
        shell.store,
        env=shell.env,
        stdout=asyncio.subprocess.PIPE,
    )
    started: list[str] = []

    async def keep_starting_runs() -> None:
        # The tail may take a while to start on a busy machine: runs started before it
        # reached the end are not "new"; one of the later ones will be.
        while True:
            started.append((await shell.engine.start("etl")).run_id)
            await asyncio.sleep(1.0)

    starter = asyncio.create_task(keep_starting_runs())
    try:
        assert proc.stdout is not None
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        # A new record of a started run, or of its sub-workflow's child run (``<run>.<task>.N``).
        assert first["key"].split(".", 1)[0] in started and first["key"] != run_id
        assert first["value"]["run_id"] == first["key"] and first["value"]["type"]
    finally:
        starter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starter
        proc.terminate()
        await proc.wait()


async def test_dead_letters_are_listed_and_replayed(shell: Shell):
    topics = shell.engine.topics
    letter = {"reason": "unreadable task message", "topic": topics.tasks, "value": "garbage"}
    await shell.engine.log.append([Message(topic=topics.dlq, key="x", value=_codec.dumps(letter))])
    (entry,) = await shell.json("dlq", "list")
    assert entry["reason"] == "unreadable task message" and entry["replayed_at"] is None
    replayed = await shell.json("dlq", "replay", entry["ref"])
    assert replayed == [
        {"ref": entry["ref"], "done": f"appended the message again to {topics.tasks}"}
    ]
    for _ in range(50):  # the worker reads the replayed garbage and dead-letters it again
        after = await shell.json("dlq", "list")
        if len(after) == 2:
            break
        await asyncio.sleep(0.2)
    original = next(e for e in after if e["ref"] == entry["ref"])
    assert original["replayed_at"] is not None
    (again,) = [e for e in after if e["ref"] != entry["ref"]]
    assert again["body"]["value"] == "garbage" and again["replayed_at"] is None
    code, _, err = await shell.run("dlq", "replay", "9:9")
    assert code == 2 and "no dead letter 9:9" in err


async def test_runs_send_moves_a_state_machine_and_a_refusal_exits_non_zero(shell: Shell):
    handle = await shell.engine.start("door")
    await shell.engine.index.wait(handle.run_id, lambda s: s.machine_state == "closed", 30.0)
    sent = await shell.json(
        "runs", "send", handle.run_id, "open_door", "--payload", '{"by": "cli"}'
    )
    assert sent == {
        "run_id": handle.run_id,
        "transition": "open_door",
        "state": "open",
        "status": "running",
    }
    code, _, err = await shell.run("runs", "send", handle.run_id, "open_door")
    assert code == 2 and "not allowed from state 'open'" in err
    assert (await shell.engine.get_run(handle.run_id)).state == "open"


async def test_runs_list_fits_the_terminal_and_json_stays_whole(shell: Shell):
    run_id = (await shell.engine.start("etl")).run_id
    assert await shell.ended(run_id) == "failed"
    error = (await shell.engine.get_run(run_id)).error or ""
    assert error.startswith("task 'fragile' failed: ")

    code, narrow, _ = await shell.run("runs", "list", "--workflow", "etl", columns=80)
    assert code == 0
    header, row = narrow.splitlines()[:2]
    assert all(len(line) <= 80 for line in narrow.splitlines())
    assert header.split() == ["run", "workflow", "status", "trigger", "started", "time", "error"]
    assert row.startswith(run_id[:12] + "…") and run_id not in row  # a prefix runs show takes
    assert " etl " in row and " failed " in row and "fragile: " in row

    code, wide, _ = await shell.run("runs", "list", "--workflow", "etl", columns=200)
    assert code == 0
    row = wide.splitlines()[1]
    assert row.startswith(run_id + " ") and len(row) <= 200
    assert row.rstrip().endswith("fragile: " + error.removeprefix("task 'fragile' failed: "))

    (listed,) = await shell.json("runs", "list", "--workflow", "etl")
    assert listed["run_id"] == run_id and listed["error"] == error


async def test_runs_list_pages_filters_by_parent_and_refuses_a_bad_attribute(shell: Shell):
    first = (await shell.engine.start("etl")).run_id
    second = (await shell.engine.start("etl")).run_id
    for run_id in (first, second):
        await shell.ended(run_id)

    page = await shell.json("runs", "list", "--workflow", "etl", "--limit", "1")
    assert [r["run_id"] for r in page] == [second]
    rest = await shell.json("runs", "list", "--workflow", "etl", "--after", second)
    assert [r["run_id"] for r in rest] == [first]
    children = await shell.json("runs", "list", "--parent", first)
    assert [r["run_id"] for r in children] == [f"{first}.validate.1"]
    assert await shell.json("runs", "list", "--attr", "customer=acme") == []

    code, out, err = await shell.run("runs", "list", "--attr", "customer")
    assert (code, out) == (2, "") and err.strip().endswith(
        "--attr takes NAME=VALUE, not 'customer'"
    )
    code, _, err = await shell.run("runs", "list", "--after", "nope")
    assert code != 0 and err.count("\n") == 1 and "no run 'nope' to list runs after" in err


async def test_a_signal_is_sent_from_the_shell_and_its_errors_are_one_line(shell: Shell):
    handle = await shell.engine.start("approval")
    await shell.engine.index.wait(
        handle.run_id, lambda s: "go" in s.tasks and s.tasks["go"].status == "waiting", 30.0
    )
    code, shown, _ = await shell.run("runs", "show", handle.run_id)
    assert code == 0 and "go waits for signal 'approve' until 20" in shown
    detail = await shell.json("runs", "show", handle.run_id)
    assert detail["waits"]["go"]["for"] == "signal 'approve'"
    code, _, err = await shell.run("runs", "signal", handle.run_id, "approve", "--data", "{by")
    assert code == 2 and err.strip().count("\n") == 0 and "--data is not JSON" in err
    sent = await shell.json(
        "runs", "signal", handle.run_id[:10], "approve", "--data", '{"by": "cli"}', "--id", "s1"
    )
    assert sent == {
        "run_id": handle.run_id,
        "action": "signal",
        "signal": "approve",
        "signal_id": "s1",
    }
    assert await shell.ended(handle.run_id) == "completed"
    assert (await shell.engine.get_run(handle.run_id)).output == {"approved_by": "cli"}

    code, _, err = await shell.run("runs", "signal", handle.run_id, "approve")
    assert code == 2 and err.strip().count("\n") == 0
    assert f"run {handle.run_id} has ended (completed): it takes no more signals" in err
    code, _, err = await shell.run("runs", "signal", "no-such-run", "approve")
    assert code == 2 and "no run 'no-such-run'" in err and "Traceback" not in err


async def test_runs_show_prints_the_event_a_node_waits_for_until_it_comes(shell: Shell):
    handle = await shell.engine.start("invoice", trigger={"body": {"invoice_id": "inv-7"}})
    await shell.engine.index.wait(
        handle.run_id,
        lambda s: "approval" in s.tasks and s.tasks["approval"].status == "waiting",
        30.0,
    )
    awaited = "event InvoiceApproved where data.invoice_id = inv-7"
    code, shown, _ = await shell.run("runs", "show", handle.run_id)
    assert code == 0 and f"approval waits for {awaited} until 20" in shown
    detail = await shell.json("runs", "show", handle.run_id)
    assert detail["result"]["tasks"]["approval"]["status"] == "waiting"
    wait = detail["waits"]["approval"]
    assert wait["for"] == awaited
    assert wait["deadline"] == pytest.approx(detail["result"]["started_at"] + 7 * 86400, abs=60)

    await publish_event_async(
        "InvoiceApproved", {"invoice_id": "inv-7", "by": "ann"}, store=shell.engine
    )
    assert await shell.ended(handle.run_id) == "completed"
    code, shown, _ = await shell.run("runs", "show", handle.run_id)
    assert code == 0 and "waits for" not in shown
    assert (await shell.json("runs", "show", handle.run_id))["waits"] == {}
