"""The ``shell`` fixture: ``deerflow`` commands run as processes against the store of an engine
(orchestrator and worker) running in the test's process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deerflow import Engine
from deerflow.cli._loader import load_module_workflows
from tests.services import unique_name

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "web" / "apps" / "ops_app.py"


@dataclass
class Shell:
    """Runs ``deerflow`` commands against the engine's store."""

    engine: Engine
    store: str
    env: dict[str, str]
    flags: Path

    async def run(
        self, *args: str, store: str | None = None, timeout: float = 60.0, columns: int = 200
    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "deerflow",
            *args,
            "--store",
            store or self.store,
            env={**self.env, "COLUMNS": str(columns)},
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def json(self, *args: str) -> Any:
        code, out, err = await self.run(*args, "--json")
        assert code == 0, err
        return json.loads(out)

    async def ended(self, run_id: str) -> str:
        state = await self.engine.index.wait(run_id, lambda s: s.terminal, 30.0)
        assert state is not None, f"run {run_id} did not end"
        return state.status


@pytest.fixture
async def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Shell]:
    prefix = unique_name("c").replace("-", "")
    monkeypatch.setenv("DEERFLOW_PREFIX", prefix)
    monkeypatch.setenv("DEERFLOW_TEST_FLAGS", str(tmp_path))
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    env.pop("DEERFLOW_STORE", None)
    workflows, _ = load_module_workflows(str(APP))
    async with Engine(store, workflows) as engine:
        yield Shell(engine, store, env, tmp_path)
