"""``deerflow.core.state`` keeps its names while the fold lives in modules of its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

import deerflow.core.state as state
from deerflow.core import fold, fold_extension, fold_registry, fold_runs, repeats, sharing

#: what ``deerflow.core.state`` gives: the documented import path of every one
NAMES = {
    "BY_CONTENT": repeats,
    "SEEN_LIMIT": repeats,
    "FoldExtension": fold_extension,
    "Wait": fold_extension,
    "SHOWN": fold_registry,
    "indexed_filters": fold_registry,
    "indexed_values": fold_registry,
    "register_fold": fold_registry,
    "request_takers": fold_registry,
    "result_fields": fold_registry,
    "status_of": fold_registry,
    "waits_of": fold_registry,
    "end_run": fold_runs,
    "next_retry": fold_runs,
    "fold": fold,
    "fold_all": fold,
    "shared": sharing,
}
OWN = [
    "COMPLETED",
    "EXPANDED",
    "FAILED",
    "LIVE_STATUSES",
    "PENDING",
    "RETRY_WAIT",
    "RUN_CANCELLED",
    "RUN_COMPLETED",
    "RUN_FAILED",
    "RUN_RUNNING",
    "SCHEDULED",
    "SKIPPED",
    "TASK_DONE",
    "Expansion",
    "RunState",
    "TaskState",
]


def test_every_name_of_the_state_module_is_the_one_its_own_module_defines():
    assert sorted(state.__all__) == sorted([*NAMES, *OWN])
    for name, home in NAMES.items():
        assert getattr(state, name) is getattr(home, name), name


def test_the_run_state_classes_stay_in_the_state_module():
    # A snapshot's schema fingerprint names each class by its module: moving one would make
    # every snapshot written before unreadable (each partition folded from offset 0 once).
    for cls in (state.RunState, state.TaskState, state.Expansion):
        assert cls.__module__ == "deerflow.core.state", cls


@pytest.mark.parametrize(
    "module",
    [
        "state",
        "fold",
        "fold_tasks",
        "fold_runs",
        "fold_extension",
        "fold_registry",
        "repeats",
        "sharing",
    ],
)
def test_any_module_of_the_fold_imports_first(module):
    done = subprocess.run(
        [sys.executable, "-c", f"import deerflow.core.{module}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
