"""The benchmark runs: ``python -m bench --quick`` end to end, and the harness's pairing maths.

A smoke test only: no number is held to a goal here (performance is judged by ratios in
``bench/results/``, never by timed assertions in tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import Comparison, Goal, Metric, Metrics, Settings, run_comparison
from tests.services import kafka_broker

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "a. engine overhead",
    "b. trigger latency",
    "c. fan-out scaling",
    "d. mapreduce",
    "e. backpressure",
    "f. peers",
    "g. event waits",
}


def on_session_broker(kafka_bootstrap: str) -> dict[str, str]:
    """The environment of a benchmark on the session's broker (a second JVM broker would
    double the Apache Kafka pass's cost), with quick group timings on the suite's own."""
    env = {**os.environ, "DEERFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap, "PYTHONPATH": str(ROOT)}
    if kafka_broker() != "kafka":
        env["DEERFLOW_KAFKA_BROKER"] = kafka_broker()
    return env


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_quick_benchmark_reports_every_scenario_without_errors(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    env = on_session_broker(kafka_bootstrap)
    proc = subprocess.run(
        # One pair after the warm-up: every scenario and comparison still runs its baseline and
        # its engine side and reports a ratio, which is all a smoke test checks (the default
        # quick run measures two pairs, a third longer, for numbers nobody reads here). The
        # warm-up stays: without it a memory row can measure the previous scenario's memory
        # being freed, a negative size.
        [
            *(sys.executable, "-m", "bench", "--quick", "--pairs", "1"),
            *("--out", str(tmp_path), "--stem", "smoke"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp_path / "smoke.json").read_text())
    rows = report["rows"]
    assert {row["scenario"] for row in rows} == SCENARIOS
    broken = [
        f"{r['scenario']} / {r['comparison']}: {r['status']}"
        for r in rows
        if r["status"].startswith("error")
    ]
    assert not broken, "\n".join(broken) + "\n" + proc.stderr[-4000:]
    measured = [r for r in rows if r["status"] == "ok"]
    unmeasured = [
        f"{r['scenario']} / {r['comparison']}: ratio {r['ratio']!r}"
        for r in measured
        if r["ratio"] is None or r["ratio"] <= 0
    ]
    assert not unmeasured, "\n".join(unmeasured) + "\n" + proc.stderr[-4000:]
    assert report["machine"]["cpus"] and report["packages"]["deerflow"]
    table = (tmp_path / "smoke.md").read_text()
    assert "| a. engine overhead | kafka p=1 w=1 |" in table


async def test_pairs_alternate_and_the_ratio_is_the_median_of_per_pair_ratios() -> None:
    calls: list[str] = []
    baseline_values = iter([100.0, 100.0, 50.0, 100.0])  # warm-up, then three pairs
    engine_values = iter([1.0, 40.0, 30.0, 60.0])

    async def baseline() -> Metrics:
        calls.append("A")
        return {"rate": next(baseline_values)}

    async def engine() -> Metrics:
        calls.append("B")
        return {"rate": next(engine_values)}

    rows = await run_comparison(
        Comparison(
            "x",
            "y",
            "base",
            "eng",
            baseline,
            engine,
            [Metric("rate", "rate", "/s", Goal(">=", 0.5, stretch=0.7))],
        ),
        Settings(pairs=3, warmup=1),
    )

    assert calls == ["A", "B"] * 4
    (row,) = rows
    assert row.samples["ratio"] == [0.4, 0.6, 0.6]  # warm-up excluded, 30/50 within its pair
    assert row.ratio == 0.6 and (row.ratio_min, row.ratio_max) == (0.4, 0.6)
    assert row.goal_holds is True and row.stretch_holds is False


async def test_a_failing_measurement_becomes_an_error_row_not_a_crash() -> None:
    async def broken() -> Metrics:
        raise RuntimeError("worker died")

    rows = await run_comparison(
        Comparison("x", "y", "", "eng", None, broken, [Metric("v", "v", "B")]), Settings()
    )
    assert [r.status for r in rows] == ["error: RuntimeError: worker died"]


def test_history_growth_takeover_loads_the_snapshots_the_previous_owner_left(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'h.db'}"
    env = {**os.environ, "DEERFLOW_PREFIX": "hg"}

    def bench(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.history_growth", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    bench("write", store, "200")
    full = json.loads(bench("takeover", store, "0"))
    first = json.loads(bench("takeover", store, "1000"))
    second = json.loads(bench("takeover", store, "1000"))
    assert (full["snapshots_loaded"], full["records_folded"]) == (0, 1600)
    assert (first["snapshots_loaded"], first["records_folded"]) == (0, 1600)
    assert second["snapshots_loaded"] == 4 and second["records_folded"] == 0


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` as a user runs it, from the repository's root."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_compaction_benchmark_prints_both_topics_and_what_each_keeps() -> None:
    done = run_module("bench.compaction", "20", "4")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["topic"], r["appends"], r["records_kept"]) for r in lines] == [
        ("plain", 120, 120),
        ("compacted", 120, 4),
    ]
    assert all(r["append_median_ms"] > 0 and r["cpu_us_per_record"] > 0 for r in lines)


def test_the_snapshot_cost_benchmark_prints_a_base_and_a_smaller_delta() -> None:
    done = run_module("bench.snapshot_cost", "300", "30")
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)
    assert (cost["runs"], cost["changed"]) == (300, 30)
    # The base holds every run, as a whole snapshot did; the delta about a tenth of them.
    assert cost["base_bytes"] == cost["whole_bytes"]
    assert 0.05 * cost["base_bytes"] < cost["delta_bytes"] < 0.2 * cost["base_bytes"]
    assert all(cost[k] > 0 for k in ("whole_ms", "base_ms", "delta_ms", "base_write_ms"))


def test_the_held_runs_benchmark_evicts_past_its_limit_and_says_what_runs_cost() -> None:
    done = run_module("bench.held_runs", "sqlite", "300", "50", "--settle=0.5")
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)
    assert (cost["runs"], cost["held"], cost["evicted"]) == (300, 50, 250)
    assert cost["objects_bytes_per_run"] > 0 and cost["rss_bytes_per_run"] != 0
    assert cost["settled_rss_bytes_per_run"] != 0 and cost["trims"] >= 0


def test_the_held_runs_benchmark_refuses_an_unknown_store_in_one_line() -> None:
    done = run_module("bench.held_runs", "postgres", "300", "50")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "usage: python -m bench.held_runs sqlite|kafka RUNS MAX_HELD_RUNS [--no-trim] [--settle=S]"
    )


def test_the_held_runs_benchmark_refuses_a_bad_settle_in_one_line() -> None:
    done = run_module("bench.held_runs", "sqlite", "300", "50", "--settle=soon")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("usage: python -m bench.held_runs")


def run_on_broker(
    kafka_bootstrap: str, module: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` on the session's broker (see :func:`on_session_broker`)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=on_session_broker(kafka_bootstrap),
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_the_scaling_benchmark_measures_each_worker_count_against_one(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    done = run_on_broker(
        kafka_bootstrap,
        *("bench.scaling", "--workers", "1,2", "--runs", "10", "--partitions", "2"),
        *("--pairs", "1", "--rounds", "1", "--stem", "smoke", "--out", str(tmp_path)),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    table = (tmp_path / "scaling-smoke.md").read_text()
    rows = {
        line.split("|")[1].strip(): line
        for line in table.splitlines()
        if line[:3] in ("| 1", "| 2")
    }
    assert sorted(rows) == ["1", "2"], table
    assert "| 1.00x [1.00-1.00] |" in rows["1"]  # one worker against itself
    assert [line.split()[2] for line in done.stdout.splitlines() if line.startswith("pass 1")] == [
        "w=1",
        "w=2",
    ]


def test_the_scaling_benchmark_refuses_fewer_partitions_than_workers_in_one_line() -> None:
    done = run_module("bench.scaling", "--workers", "1,4", "--partitions", "2")
    assert done.returncode == 1
    assert done.stderr.strip() == "--partitions 2 < 4 workers: some would idle"


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_the_kafka_clients_benchmark_runs_the_chains_on_each_client_beside_the_relay(
    kafka_bootstrap: str,
) -> None:
    pytest.importorskip("confluent_kafka")
    done = run_on_broker(
        kafka_bootstrap, "bench.kafka_clients", "engine", "--runs", "10", "--pairs", "1"
    )
    assert done.returncode == 0, done.stderr[-4000:]
    sides = [line.split()[4] for line in done.stdout.splitlines() if "chains  pass 1" in line]
    assert sides == ["relay", "aiokafka", "confluent"], done.stdout
