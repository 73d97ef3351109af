"""State machines from the shell: ``deerflow run`` on the spec's machine says where the
instance waits and how to move it, owns it while ``deerflow runs send`` from another shell
moves it, and ends with it; without an owner, a send answers at once."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_cli_run import ROOT
from tests.services import unique_name

#: The spec's order state machine, as the examples ship it.
ORDERS = ROOT / "examples" / "state_machine.py"

#: A machine whose one transition takes 3 s to apply.
SLOW_GATE = """
import time
from deerflow import State, StateMachine, Transition, Workflow

workflow = Workflow(name="gate")

@workflow.state_machine
class Gate(StateMachine):
    open_ = State(initial=True, name="open")
    closed = State(final=True)
    close = Transition(source=open_, target=closed)

    @on_transition(close)
    def slowly(self, context):
        time.sleep(3)
"""


async def deerflow(*args: str, cwd: Path, prefix: str = "deerflow") -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "deerflow",
        *args,
        cwd=cwd,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "200",
            "DEERFLOW_PREFIX": prefix,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def shell(*args: str, cwd: Path, prefix: str = "deerflow") -> tuple[int, str, str]:
    proc = await deerflow(*args, cwd=cwd, prefix=prefix)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_shows_the_state_takes_sends_from_another_shell_and_ends_at_a_final_state(
    tmp_path: Path,
):
    order = '{"order": {"id": "o-1", "email": "ada@example.com", "total": 42}}'
    owner = await deerflow("run", str(ORDERS), "--input", order, cwd=tmp_path)
    assert owner.stderr is not None
    waits = (await asyncio.wait_for(owner.stderr.readline(), 60)).decode()
    how = (await asyncio.wait_for(owner.stderr.readline(), 60)).decode()
    run_id = waits.split()[1]
    assert waits == f"instance {run_id} waits in state 'pending'; allowed: confirm, cancel\n"
    assert how == f"send one from another shell: deerflow runs send {run_id} confirm\n"

    for transition, target in (
        ("confirm", "confirmed"),
        ("start_processing", "processing"),
        ("ship", "shipped"),
        ("deliver", "delivered"),
    ):
        code, out, err = await shell("runs", "send", run_id, transition, cwd=tmp_path)
        assert (code, out) == (0, f"{run_id}: {transition} -> {target}\n"), err

    owner_out, rest = await asyncio.wait_for(owner.communicate(), 60)
    assert owner.returncode == 0, rest.decode()
    assert owner_out.decode().startswith(
        f"completed run {run_id} of order_state_machine in state 'delivered'\n"
    )
    states = [line for line in rest.decode().splitlines() if line.startswith("instance ")]
    assert states == [
        f"instance {run_id} waits in state 'confirmed'; allowed: start_processing, cancel",
        f"instance {run_id} waits in state 'processing'; allowed: ship",
        f"instance {run_id} waits in state 'shipped'; allowed: deliver",
    ]


async def test_a_send_that_does_not_apply_in_time_says_so_in_one_line(tmp_path: Path):
    (tmp_path / "gate.py").write_text(SLOW_GATE)
    owner = await deerflow("run", "gate.py", cwd=tmp_path)
    assert owner.stderr is not None
    run_id = (await asyncio.wait_for(owner.stderr.readline(), 60)).decode().split()[1]

    code, _, err = await shell("runs", "send", run_id, "close", "--timeout", "1", cwd=tmp_path)
    assert code == 124
    assert err == (
        f"error: transition 'close' of {run_id} was not applied within 1s; the request stays "
        f"queued: see it with `deerflow runs show {run_id}`\n"
    )
    await asyncio.wait_for(owner.communicate(), 60)  # the request applies, the instance ends
    assert owner.returncode == 0


async def test_without_an_owner_a_send_answers_at_once_with_what_to_start(tmp_path: Path):
    (tmp_path / "gate.py").write_text(SLOW_GATE)
    code, _, err = await shell("run", "gate.py", "--timeout", "1", cwd=tmp_path)
    assert code == 124, err
    run_id = err.split("error: run ", 1)[1].split()[0]

    began = time.monotonic()
    code, out, err = await shell("runs", "send", run_id, "close", cwd=tmp_path)
    assert time.monotonic() - began < 10
    assert (code, out) == (2, "")
    assert err == (
        f"error: no process owns instance {run_id} of gate, so nothing would apply 'close': "
        "start `deerflow worker FILE.py` or `deerflow serve FILE.py` (FILE.py defines gate), "
        "then send again\n"
    )

    code, _, err = await shell("runs", "show", run_id, "--follow", "--timeout", "1", cwd=tmp_path)
    assert code == 124
    assert err.splitlines()[-1] == (
        f"error: run {run_id} did not end within 1s; no process works on it now: start "
        f"`deerflow worker FILE.py`; see it with `deerflow runs show {run_id}`"
    )
    assert "Traceback" not in err and "state-machine instance in state 'open'" in err


@pytest.mark.kafka
async def test_on_kafka_a_send_after_the_owner_left_answers_within_seconds(
    tmp_path: Path, kafka_url: str
):
    # Tansu lists a member that has left until the group changes: the broker cannot tell that
    # no process owns the instance, and the send must not wait out its timeout.
    (tmp_path / "gate.py").write_text(SLOW_GATE)
    prefix = unique_name("send").replace("-", "")
    code, _, err = await shell(
        "run", "gate.py", "--timeout", "1", "--store", kafka_url, cwd=tmp_path, prefix=prefix
    )
    assert code == 124, err
    run_id = err.split("error: run ", 1)[1].split()[0]

    began = time.monotonic()
    code, out, err = await shell(
        "runs",
        "send",
        run_id,
        "close",
        "--timeout",
        "120",
        "--store",
        kafka_url,
        cwd=tmp_path,
        prefix=prefix,
    )
    # Answered, not waited out: far below the timeout (a loaded machine takes seconds just
    # to start the command and join the broker).
    assert time.monotonic() - began < 60
    assert (code, out) == (2, ""), err
    (line,) = err.splitlines()
    assert line.startswith("error: no process ") and f" instance {run_id} of gate" in line
    assert f"start `deerflow worker FILE.py --store {kafka_url}` or " in line
    assert f"`deerflow serve FILE.py --store {kafka_url}` (FILE.py defines gate)" in line

    # An owner started now applies the request: the one queued (the broker still listed the
    # gone owner, so the send was appended), or the one sent again (the broker knew at once).
    owner = await deerflow("worker", "gate.py", "--store", kafka_url, cwd=tmp_path, prefix=prefix)
    try:
        if "the request stays queued and applies then" not in line:
            assert line.endswith(", then send again")
            deadline = time.monotonic() + 40
            while True:  # until the owner has joined
                code, out, err = await shell(
                    "runs",
                    "send",
                    run_id,
                    "close",
                    "--store",
                    kafka_url,
                    cwd=tmp_path,
                    prefix=prefix,
                )
                if "no process owns" not in err or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            assert (code, out) == (0, f"{run_id}: close -> closed\n"), err
        code, out, err = await shell(
            "runs",
            "show",
            run_id,
            "--follow",
            "--timeout",
            "45",
            "--store",
            kafka_url,
            cwd=tmp_path,
            prefix=prefix,
        )
    finally:
        owner.terminate()
        await owner.wait()
    assert code == 0, err
    code, out, err = await shell(
        "runs", "show", run_id, "--json", "--store", kafka_url, cwd=tmp_path, prefix=prefix
    )
    shown = json.loads(out)
    assert (shown["result"]["status"], shown["result"]["state"]) == ("completed", "closed")
