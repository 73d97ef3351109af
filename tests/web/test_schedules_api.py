"""Schedules in the JSON API: list, pause, resume and backfill, and the errors of each."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Deployment, until

BACKFILL = "/api/schedules/nightly-report/backfill"


async def test_a_schedule_is_listed_paused_resumed_and_backfilled(deployment: Deployment) -> None:
    (listed,) = (await deployment.get("/api/schedules"))["schedules"]
    assert listed["name"] == "nightly-report" and listed["workflow"] == "nightly"
    assert listed["when"] == "cron 0 3 * * * (Europe/Paris)" and listed["paused"] is False
    assert "T03:00:00+0" in listed["next_tick"]

    paused = await deployment.post("/api/schedules/nightly-report/pause", 200)
    assert paused == {"name": "nightly-report", "paused": True, "changed": True}
    again = await deployment.post("/api/schedules/nightly-report/pause", 200)
    assert again["changed"] is False
    (listed,) = (await deployment.get("/api/schedules"))["schedules"]
    assert listed["paused"] is True and listed["next_tick"] is None
    resumed = await deployment.post("/api/schedules/nightly-report/resume", 200)
    assert resumed == {"name": "nightly-report", "paused": False, "changed": True}

    started = await deployment.post(
        BACKFILL, 202, {"from": "2026-03-28T00:00", "to": "2026-03-30T12:00", "max_parallel": 2}
    )
    assert started["ticks"] == 3 and len(set(started["run_ids"])) == 3
    outputs = []
    for run_id in started["run_ids"]:
        state = await deployment.wait(run_id)
        outputs.append(state.output)
    # 03:00 in Paris on each day, across the night the clocks go forward (29 March).
    assert outputs == [
        "2026-03-28T03:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T03:00:00+02:00",
    ]

    repeated: dict[str, Any] = {}

    async def accepted() -> bool:  # 409 until the first backfill has seen its runs end
        async with deployment.session.post(
            deployment.url + BACKFILL, json={"from": "2026-03-28", "to": "2026-03-30"}
        ) as reply:
            repeated.update(await reply.json())
            return reply.status == 202

    await until(accepted, what="a second backfill accepted")
    assert repeated["run_ids"] == started["run_ids"][:2]  # the same runs: nothing new starts
    assert len(await deployment.engine.list_runs(workflow="nightly")) == 3


async def test_schedule_errors_are_json_with_their_status(deployment: Deployment) -> None:
    unknown = await deployment.post("/api/schedules/weekly/pause", 404)
    assert unknown == {"error": "no schedule named 'weekly' (known: nightly-report)"}
    await deployment.post(
        "/api/schedules/weekly/backfill", 404, {"from": "2026-01-01", "to": "2026-01-02"}
    )
    for body, problem in [
        ({}, "a backfill needs 'from' and 'to'"),
        ({"from": "yesterday", "to": "2026-01-01"}, "'from' is not an ISO-8601 time"),
        (
            {"from": "2026-01-01", "to": "2026-01-02", "max_parallel": 0},
            "'max_parallel' must be from 1",
        ),
        (
            {"from": "2026-01-01", "to": "2026-01-02", "max_parallel": "2"},
            "'max_parallel' must be a whole",
        ),
    ]:
        answer = await deployment.post(BACKFILL, 400, body)
        assert problem in answer["error"], (body, answer)
    for body, problem in [  # well-formed, but no backfill to do
        ({"from": "2026-02-01", "to": "2026-01-01"}, "--from must not be after --to"),
        ({"from": "1990-01-01", "to": "2026-01-02"}, "more than 10000 ticks"),
    ]:
        answer = await deployment.post(BACKFILL, 409, body)
        assert problem in answer["error"], (body, answer)

    first = await deployment.post(
        BACKFILL, 202, {"from": "2025-01-01", "to": "2025-03-01", "max_parallel": 1}
    )
    assert first["ticks"] == 59  # 03:00 from 1 January to 28 February
    busy = await deployment.post(BACKFILL, 409, {"from": "2025-01-01", "to": "2025-01-02"})
    assert busy == {"error": "a backfill of 'nightly-report' is running; wait for it to end"}
