"""Sub-workflow nodes as values, and workflows composed by name with connections."""

from __future__ import annotations

from typing import Any

import pytest

from deerflow import DefinitionError, Engine, SubWorkflow, Workflow, compose_workflows


def stage(name: str, fn) -> Workflow:
    wf = Workflow(name=name)
    wf.task(id="step")(fn)
    return wf


@pytest.fixture
def stages():
    """Three named workflows, alive for the test (the catalog holds them weakly)."""
    return [
        stage("extraction_wf", lambda context: {"rows": [1, 2, 3]}),
        stage(
            "transformation_wf", lambda context: {"rows": [r * 10 for r in context.input["rows"]]}
        ),
        stage(
            "loading_wf",
            lambda context: {
                "loaded": sum(context.input["rows"]),
                "day": context.params.get("day"),
            },
        ),
    ]


def pipeline(**overrides):
    spec: dict[str, Any] = dict(
        name="full_pipeline",
        workflows=[
            {"workflow": "loading_wf", "alias": "load", "depends_on": ["transform"]},
            {"workflow": "extraction_wf", "alias": "extract"},
            {"workflow": "transformation_wf", "alias": "transform", "depends_on": ["extract"]},
        ],
        connections={"transform.input": "extract.output", "load.input": "transform.output"},
    )
    spec.update(overrides)
    return compose_workflows(**spec)


async def test_composed_workflows_run_as_child_runs_wired_by_their_connections(stages, store):
    composed = pipeline()
    assert list(composed.tasks) == ["extract", "transform", "load"]  # listed in any order
    async with Engine(store, [composed]) as engine:
        result = await (await engine.start(composed, params={"day": "d1"})).result(timeout=60)
        load = await engine.get_run(f"{result.run_id}.load.1")
    assert result.status == "completed", result.error
    assert result.output == {"loaded": 60, "day": "d1"}
    assert load.workflow == "loading_wf" and load.input == {"rows": [10, 20, 30]}


async def test_a_connection_picks_one_upstream_output_as_the_child_input(stages):
    composed = compose_workflows(
        name="picky",
        workflows=[
            {"workflow": "extraction_wf", "alias": "a"},
            {"workflow": "extraction_wf", "alias": "b"},
            {"workflow": "loading_wf", "alias": "load", "depends_on": ["a", "b"]},
        ],
        connections={"load.input": "b.output"},
    )
    async with Engine("memory://", [composed]) as engine:
        result = await (await engine.start(composed)).result(timeout=60)
    assert result.output == {"loaded": 6, "day": None}


def test_names_are_resolved_in_an_explicit_registry_first(stages):
    newer = stage("extraction_wf", lambda context: {"rows": []})  # the catalog now finds this
    by_catalog = compose_workflows(name="implicit", workflows=[{"workflow": "extraction_wf"}])
    assert by_catalog.get("extraction_wf").options["workflow"] is newer
    explicit = compose_workflows(
        name="explicit",
        workflows=[{"workflow": "extraction_wf"}],
        registry={"extraction_wf": stages[0]},
    )
    assert explicit.get("extraction_wf").options["workflow"] is stages[0]
    from_list = compose_workflows(
        name="explicit2", workflows=[{"workflow": "extraction_wf"}], registry=[stages[0]]
    )
    assert from_list.get("extraction_wf").options["workflow"] is stages[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workflows": [{"workflow": "nope_wf", "alias": "x"}]}, "no workflow named 'nope_wf'"),
        (
            {
                "workflows": [
                    {"workflow": "extraction_wf", "alias": "x"},
                    {"workflow": "loading_wf", "alias": "x"},
                ]
            },
            "duplicate alias 'x'",
        ),
        (
            {"workflows": [{"workflow": "loading_wf", "depends_on": ["ghost"]}]},
            "alias 'loading_wf' depends on unknown alias 'ghost'",
        ),
        (
            {"connections": {"loader.input": "transform.output"}},
            "connection 'loader.input': 'transform.output': unknown alias 'loader'",
        ),
        ({"connections": {"load.input": "transform.outptu"}}, "connect '<alias>.input' to"),
        ({"connections": {"load.input": "transform"}}, "is not '<alias>.input' or"),
        ({"connections": {"load.input": "load.output"}}, "cannot feed itself"),
        ({"connections": {"extract.input": "load.output"}}, "dependency cycle"),
        ({"workflows": [{"workflow": "extraction_wf", "alias": "a/b"}]}, "invalid alias 'a/b'"),
        ({"workflows": [{"workflow": "extraction_wf", "inputs": 1}]}, "unknown keys ['inputs']"),
    ],
)
def test_bad_aliases_and_connections_are_refused_at_definition(stages, change, message):
    with pytest.raises(DefinitionError) as caught:
        pipeline(**change)
    assert message in str(caught.value)


async def test_a_sub_workflow_node_is_a_value_added_with_add(stages):
    main = Workflow(name="main_with_node")
    main.task(id="extract")(lambda context: {"rows": [4, 5]})
    main.task(id="other")(lambda context: {"rows": [100]})
    node = SubWorkflow(
        id="load", workflow=stages[2], depends_on=["extract", "other"], input_from="extract"
    )
    main.add(node)
    async with Engine("memory://", [main]) as engine:
        result = await (await engine.start(main)).result(timeout=60)
    assert result.output == {"loaded": 9, "day": None}


def test_input_from_must_be_a_dependency(stages):
    main = Workflow(name="bad_input_from")
    main.task(id="extract")(lambda context: None)
    with pytest.raises(DefinitionError, match="input_from='other' must be one of depends_on"):
        main.add(
            SubWorkflow(id="load", workflow=stages[2], depends_on=["extract"], input_from="other")
        )
