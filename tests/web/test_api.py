"""The JSON API over real HTTP, on the same port as the webhook gateway (as ``serve`` runs it)."""

from __future__ import annotations

from urllib.parse import unquote

import aiohttp
import pytest

import deerflow._codec as _codec
from deerflow.log.base import Message, TopicPartition
from deerflow.web._api import routes
from deerflow.web._openapi import document
from tests.services import unique_name
from tests.web.conftest import Deployment, deploy


async def test_a_failed_run_is_listed_and_described_with_its_graph_attempts_and_history(
    deployment: Deployment,
):
    run_id = await deployment.webhook()
    await deployment.wait(run_id)

    listed = await deployment.get("/api/runs?workflow=etl&status=failed")
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    assert listed["runs"][0]["trigger"] == "etl.webhook.hooks.etl"
    assert listed["runs"][0]["failed_task"] == "fragile"
    assert (await deployment.get("/api/runs?status=completed&workflow=etl"))["runs"] == []

    detail = await deployment.get(f"/api/runs/{run_id}")
    assert detail["run"]["status"] == "failed"
    nodes = {n["id"]: n for n in detail["graph"]["nodes"]}
    assert nodes["square"]["kind"] == "expanded"
    assert nodes["square"]["children_by_status"] == {"completed": 5}
    assert nodes["validate"]["kind"] == "subworkflow"
    assert nodes["validate"]["child_runs"] == [f"{run_id}.validate.1"]
    assert nodes["fragile"]["status"] == "failed" and nodes["report"]["status"] == "skipped"
    assert {"from": "validate", "to": "fragile"} in detail["graph"]["edges"]
    assert nodes["fragile"]["layer"] > nodes["square"]["layer"] > nodes["split"]["layer"]
    (attempt,) = detail["attempts"]["fragile"]
    assert attempt["error_type"] == "NonRetryableError"
    assert "refused the batch" in attempt["traceback"]

    child = await deployment.get(f"/api/runs/{run_id}.validate.1")
    assert child["run"]["parent_run_id"] == run_id
    history = (await deployment.get(f"/api/runs/{run_id}/history"))["events"]
    assert history[0]["type"] == "RunRequested" and history[-1]["type"] == "RunFailed"
    assert {e["run_id"] for e in history} == {run_id}  # the child run's events are its own
    offsets = [e["offset"] for e in history]
    assert offsets == sorted(offsets)


async def test_a_failed_run_is_retried_from_its_failed_task(deployment: Deployment):
    run_id = await deployment.webhook()
    await deployment.wait(run_id)
    conflict = await deployment.post(f"/api/runs/{run_id}.validate.1/retry", status=409)
    assert "only failed runs" in conflict["error"]

    (deployment.flags / "fixed").touch()
    accepted = await deployment.post(f"/api/runs/{run_id}/retry", body={"reason": "fixed"})
    assert accepted == {"run_id": run_id, "action": "retry", "retry": 1}
    state = await deployment.wait(run_id, lambda s: s.status == "completed")

    run = (await deployment.get(f"/api/runs/{run_id}"))["run"]
    assert run["output"] == {"rows": 5}
    assert run["tasks"]["fragile"]["attempts"] == 2
    assert run["tasks"]["split"]["attempts"] == 1  # completed tasks were not run again
    assert run["tasks"]["square/0"]["attempts"] == 1
    assert state.retries == 1
    again = await deployment.post(f"/api/runs/{run_id}/retry", status=409)
    assert "is completed" in again["error"]


async def test_a_running_run_is_cancelled_and_unknown_runs_are_404(deployment: Deployment):
    run_id = (await deployment.engine.start("waiting")).run_id
    await deployment.wait(
        run_id, lambda s: s.tasks.get("wait") is not None and s.tasks["wait"].status == "scheduled"
    )
    await deployment.post(f"/api/runs/{run_id[:12]}/cancel", body={"reason": "not needed"})
    state = await deployment.wait(run_id)
    assert state.status == "cancelled" and state.error == "not needed"
    (deployment.flags / "release").touch()

    missing = await deployment.get(f"/api/runs/{run_id[:-1]}x", status=404)
    assert missing == {"error": f"no run '{run_id[:-1]}x'"}  # no store URL, no close run ids
    ambiguous = await deployment.get("/api/runs/", status=404)
    assert "error" in ambiguous
    async with deployment.session.get(f"{deployment.url}/ui/runs/{run_id[:-1]}x") as page:
        text = await page.text()
        assert page.status == 404 and f"no run &#x27;{run_id[:-1]}x&#x27;" in text
        assert "memory://" not in text and text.count(run_id[:-1]) == 1
    async with deployment.session.post(
        f"{deployment.url}/ui/runs/{run_id[:-1]}x/cancel", allow_redirects=False
    ) as refused:
        location = unquote(refused.headers["Location"])
        assert refused.status == 303 and f"error=no run '{run_id[:-1]}x'" in location
        assert "memory://" not in location and location.count(run_id[:-1]) == 2  # path, message
    await deployment.post("/api/runs/no-such-run/cancel", status=404)
    bad = await deployment.get("/api/runs?since=yesterday-ish", status=400)
    assert "not a time" in bad["error"]
    assert (
        "no run 'x'"
        in (
            await deployment.post(
                "/api/runs/x/transitions", status=404, body={"transition": "ship"}
            )
        )["error"]
    )


async def test_dead_letters_are_listed_and_replayed_onto_their_topic(deployment: Deployment):
    engine = deployment.engine
    letter = {
        "reason": "unreadable task message",
        "topic": engine.topics.tasks,
        "partition": 0,
        "offset": 7,
        "value": "{not json",
    }
    await engine.log.append(
        [Message(topic=engine.topics.dlq, key="k1", value=_codec.dumps(letter))]
    )
    (entry,) = (await deployment.get("/api/dlq"))["dead_letters"]
    assert entry["source"] == "worker" and entry["replayed_at"] is None
    assert entry["reason"] == "unreadable task message"

    done = await deployment.post(f"/api/dlq/{entry['ref']}/replay")
    assert done["ref"] == entry["ref"] and engine.topics.tasks in done["done"]
    replayed = [
        e for e in (await deployment.get("/api/dlq"))["dead_letters"] if e["ref"] == entry["ref"]
    ]
    assert replayed[0]["replayed_at"] is not None
    tasks = await engine.log.read_partitions(
        {
            TopicPartition(engine.topics.tasks, p): 0
            for p in range(await engine.log.partition_count(engine.topics.tasks))
        }
    )
    assert b"{not json" in [r.value for rs in tasks.values() for r in rs]
    unknown = await deployment.post("/api/dlq/0:999/replay", status=404)
    assert unknown == {"error": "no dead letter 0:999"}  # nor where the store is
    assert (await deployment.post("/api/dlq/99:0/replay", status=404))["error"]
    assert (await deployment.post(f"/api/dlq/0:{2**70}/replay", status=404))["error"]
    malformed = await deployment.post("/api/dlq/zero:1/replay", status=400)
    assert "PARTITION:OFFSET" in malformed["error"]


async def test_metrics_count_runs_tasks_retries_and_webhook_answers(deployment: Deployment):
    run_id = await deployment.webhook()
    await deployment.wait(run_id)
    async with deployment.session.post(deployment.url + "/hooks/etl", data=b"{oops") as reply:
        assert reply.status == 400
    (deployment.flags / "fixed").touch()
    await deployment.post(f"/api/runs/{run_id}/retry")
    await deployment.wait(run_id, lambda s: s.status == "completed")
    async with deployment.session.get(deployment.url + "/metrics") as reply:
        assert reply.status == 200
        text = await reply.text()
    assert 'deerflow_runs_started_total{workflow="etl"} 1.0' in text
    assert 'deerflow_runs_finished_total{status="failed",workflow="etl"} 1.0' in text
    assert 'deerflow_runs_finished_total{status="completed",workflow="etl"} 1.0' in text
    assert 'deerflow_runs_retried_total{workflow="etl"} 1.0' in text
    # five fan-out children and the planner, all under the node's label
    assert (
        'deerflow_task_duration_seconds_count{outcome="completed",task="square",workflow="etl"} 6.0'
    ) in text
    assert 'deerflow_webhook_responses_total{route="/hooks/etl",status="202"} 1.0' in text
    assert 'deerflow_webhook_responses_total{route="/hooks/etl",status="400"} 1.0' in text
    assert "deerflow_task_queue_depth" in text and 'deerflow_dlq_messages{state="pending"}' in text
    assert 'deerflow_runs_running{workflow="etl"}' not in text


async def test_with_api_keys_everything_but_the_openapi_document_needs_one(isolated):
    async for served in deploy(f"memory://{unique_name('web')}", isolated, ["s3cret"]):
        await served.get("/api/runs", status=401)
        await served.get("/api/runs", status=401, **{"X-API-Key": "wrong"})
        assert (await served.get("/api/runs", 200, **{"X-API-Key": "s3cret"}))["runs"] == []
        assert (await served.get("/api/runs", Authorization="Bearer s3cret"))["runs"] == []
        assert (await served.get("/api/openapi.json"))["openapi"].startswith("3.")
        async with served.session.get(served.url + "/metrics") as reply:
            assert reply.status == 401
        async with served.session.get(served.url + "/ui/") as reply:
            assert reply.status == 401 and "API key" in await reply.text()
        # (unsafe: the jar must keep cookies of an IP address, as browsers do)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(
                served.url + "/ui/login",
                allow_redirects=False,
                data={"api_key": "s3cret", "next": "/ui/"},
            ) as reply:
                assert reply.status == 303
            async with browser.get(served.url + "/ui/") as reply:
                assert reply.status == 200 and "<h1>Runs</h1>" in await reply.text()
            async with browser.post(
                served.url + "/ui/runs/x/cancel", headers={"Origin": "http://evil.example"}
            ) as reply:
                assert reply.status == 403  # the cookie alone cannot act from another site


def test_the_openapi_document_describes_exactly_the_api_routes():
    doc = document()
    described = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {("/api" + r.path, r.method) for r in routes()}
    assert described == served
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["summary"] and op["operationId"]
            assert {"200", "202"} & set(op["responses"])


@pytest.mark.kafka
async def test_on_kafka_a_failed_run_is_shown_from_its_partition_and_retried(isolated, kafka_url):
    async for served in deploy(kafka_url, isolated):
        run_id = await served.webhook()
        await served.wait(run_id, timeout=60)
        history = (await served.get(f"/api/runs/{run_id}/history"))["events"]
        assert [e["type"] for e in history][-1] == "RunFailed"
        assert {e["run_id"] for e in history} == {run_id}
        (isolated / "fixed").touch()
        await served.post(f"/api/runs/{run_id}/retry")
        state = await served.wait(run_id, lambda s: s.status == "completed", timeout=60)
        assert state.tasks["fragile"].attempts == 2


async def test_state_machine_transitions_are_sent_through_the_api(deployment: Deployment):
    handle = await deployment.engine.start("door")
    await deployment.wait(handle.run_id, lambda s: s.machine_state == "closed")
    sent = await deployment.post(
        f"/api/runs/{handle.run_id}/transitions",
        body={"transition": "open_door", "data": {"by": "api"}},
    )
    assert sent["state"] == "open"
    assert (deployment.flags / "opened").read_text() == "{'by': 'api'}"
    refused = await deployment.post(
        f"/api/runs/{handle.run_id}/transitions", status=409, body={"transition": "open_door"}
    )
    assert "not allowed from state 'open'" in refused["error"]
    detail = await deployment.get(f"/api/runs/{handle.run_id}")
    assert detail["run"]["state"] == "open"
    assert [t["target"] for t in detail["run"]["transitions"]] == ["closed", "open"]


async def test_bad_parameters_and_bodies_get_a_400_that_names_them(deployment: Deployment):
    run_id = await deployment.webhook()
    await deployment.wait(run_id)
    for body, says in (
        ({"reason": {"nested": 1}}, "'reason' must be a string, not dict"),
        ({"reason": None}, "'reason' must be a string, not NoneType"),
        ([1, 2], "body must be a JSON object"),
    ):
        refused = await deployment.post(f"/api/runs/{run_id}/retry", status=400, body=body)
        assert refused == {"error": says}
    handle = await deployment.engine.start("door")
    where = f"/api/runs/{handle.run_id}/transitions"
    assert (
        "non-empty string"
        in (await deployment.post(where, status=400, body={"transition": ""}))["error"]
    )
    assert (await deployment.post(where, status=400, body={"transition": "x", "data": [1]}))[
        "error"
    ] == "'data' must be a JSON object, not list"
    not_a_machine = await deployment.post(
        f"/api/runs/{run_id}/transitions", status=409, body={"transition": "open_door"}
    )
    assert "is not a state-machine instance" in not_a_machine["error"]

    for query, says in (
        ("limit=-1", "limit must be a whole number from 0, not '-1'"),
        ("limit=%C2%B2", "limit must be a whole number from 0"),
        ("since=2024-01-01T10:00", "not a time: '2024-01-01T10:00' (use epoch seconds, an RFC"),
        ("until=", "not a time: ''"),
    ):
        assert says in (await deployment.get(f"/api/runs?{query}", status=400))["error"]
    for query in (
        "since=2h",
        "since=1700000000.5",
        "since=2024-01-01",
        "until=2030-01-01t00:00:00z",
    ):
        assert [r["run_id"] for r in (await deployment.get(f"/api/runs?{query}"))["runs"]]


async def test_a_wrong_method_and_an_oversized_body_are_answered_in_json(deployment: Deployment):
    async with deployment.session.delete(deployment.url + "/api/runs") as reply:
        assert reply.status == 405 and "GET" in reply.headers["Allow"]
        assert await reply.json() == {"error": "method not allowed"}
    big = {"reason": "x" * 70_000}
    async with deployment.session.post(deployment.url + "/api/runs/x/cancel", json=big) as reply:
        assert reply.status == 413 and "error" in await reply.json()


async def test_a_signal_is_accepted_and_refused_once_the_run_ended(
    deployment: Deployment,
):
    run_id = (await deployment.engine.start("approval")).run_id
    await deployment.wait(
        run_id, lambda s: s.tasks.get("go") is not None and s.tasks["go"].status == "waiting"
    )
    shown = await deployment.get(f"/api/runs/{run_id}")
    go = next(n for n in shown["graph"]["nodes"] if n["id"] == "go")
    assert go["status"] == "waiting" and go["waits_for"] == "signal 'approve'"
    assert go["deadline"] > shown["run"]["started_at"] + 3500

    bad = await deployment.post(f"/api/runs/{run_id}/signals/approve", status=422, body=[1])
    assert bad == {"error": "body must be a JSON object"}
    long = await deployment.post(f"/api/runs/{run_id}/signals/{'x' * 201}", status=422)
    assert long == {"error": "a signal name is 1 to 200 characters"}
    bad_id = await deployment.post(
        f"/api/runs/{run_id}/signals/approve", status=422, body={"signal_id": 7}
    )
    assert bad_id == {"error": "'signal_id' must be a non-empty string"}
    body = {"data": {"by": "ann"}, "signal_id": "req-7"}
    accepted = await deployment.post(f"/api/runs/{run_id[:12]}/signals/approve", body=body)
    assert accepted == {
        "run_id": run_id,
        "action": "signal",
        "signal": "approve",
        "signal_id": "req-7",
    }
    state = await deployment.wait(run_id)
    assert state.status == "completed" and state.output == {"approved_by": "ann"}

    ended = await deployment.post(f"/api/runs/{run_id}/signals/approve", status=409, body=body)
    assert ended == {"error": f"run {run_id} has ended (completed): it takes no more signals"}
    missing = await deployment.post("/api/runs/no-such-run/signals/approve", status=404)
    assert missing == {"error": "no run 'no-such-run'"}


async def test_a_run_waiting_for_an_event_says_which_and_until_when(deployment: Deployment):
    run_id = (
        await deployment.engine.start("invoice", trigger={"body": {"invoice_id": "inv-7"}})
    ).run_id
    await deployment.wait(
        run_id,
        lambda s: s.tasks.get("approval") is not None and s.tasks["approval"].status == "waiting",
    )
    shown = await deployment.get(f"/api/runs/{run_id}")
    awaited = "event InvoiceApproved where data.invoice_id = inv-7"
    wait = shown["waits"]["approval"]
    assert wait["for"] == awaited
    assert 7 * 86400 - 60 < wait["deadline"] - shown["run"]["started_at"] < 7 * 86400 + 1
    node = next(n for n in shown["graph"]["nodes"] if n["id"] == "approval")
    assert (node["status"], node["waits_for"], node["deadline"]) == (
        "waiting",
        awaited,
        wait["deadline"],
    )
    assert shown["run"]["tasks"]["approval"]["status"] == "waiting"
