"""One retry-options model: every decorator that takes retries validates them the same way.

What a user relies on: a bad ``retries``, ``retry_delay``, ``backoff`` or ``timeout`` on any
decorator fails when the workflow is defined, with a message naming the workflow and the task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deerflow import DefinitionError, MapReduce, Saga, Workflow
from deerflow.patterns import parallel
from deerflow.sagas import step


def noop(context: Any) -> None:
    return None


def a_task(wf: Workflow, **options: Any) -> None:
    wf.task(id="t", **options)(noop)


def a_fan_out(wf: Workflow, **options: Any) -> None:
    wf.task(id="src")(noop)
    wf.parallel_tasks(id="t", depends_on=["src"], **options)(noop)


def a_functional_fan_out(wf: Workflow, **options: Any) -> None:
    wf.task(id="src")(noop)
    wf.add(parallel(noop, over="src.items", id="t", **options))


def dynamic_tasks(wf: Workflow, **options: Any) -> None:
    wf.dynamic_tasks(id="t", **options)(noop)


def a_map_reduce(wf: Workflow, **options: Any) -> None:
    class Job(MapReduce):
        def partition(self, context: Any) -> list[Any]:
            return []

        def map(self, partition: Any, context: Any) -> Any:
            return None

        def reduce(self, results: Any, context: Any) -> Any:
            return None

    wf.map_reduce(id="t", **options)(Job)


def a_sub_workflow(wf: Workflow, **options: Any) -> None:
    child = Workflow(name="child")
    child.task(id="c")(noop)
    wf.sub_workflow(id="t", workflow=child, **options)


def a_saga_step(wf: Workflow, **options: Any) -> None:
    class Steps(Saga):
        @step(order=1, **options)
        def t(self, context: Any) -> None:
            return None

    wf.saga(Steps)


def an_event_handler(wf: Workflow, **options: Any) -> None:
    wf.event_handler("t", **options)(noop)


DECORATORS: list[Callable[..., None]] = [
    a_task,
    a_fan_out,
    a_functional_fan_out,
    dynamic_tasks,
    a_map_reduce,
    a_sub_workflow,
    a_saga_step,
    an_event_handler,
]


@pytest.mark.parametrize("decorate", DECORATORS, ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be >= 0"),
        ({"retry_delay": -1.0}, "retry delays must be >= 0"),
        ({"backoff": 0.5}, "backoff must be >= 1"),
        ({"timeout": 0}, "timeout must be > 0"),
    ],
    ids=["retries", "retry_delay", "backoff", "timeout"],
)
def test_bad_retry_options_fail_naming_the_workflow_and_the_task(
    decorate: Callable[..., None], options: dict[str, Any], message: str
) -> None:
    wf = Workflow(name="orders")
    with pytest.raises(DefinitionError, match=message) as info:
        decorate(wf, **options)
    assert "workflow 'orders', task 't'" in str(info.value)


@pytest.mark.parametrize("decorate", DECORATORS, ids=lambda d: d.__name__)
def test_good_retry_options_are_accepted_by_every_decorator(
    decorate: Callable[..., None],
) -> None:
    decorate(Workflow(name="orders"), retries=2, retry_delay=0.5, backoff=3.0, timeout=5.0)
