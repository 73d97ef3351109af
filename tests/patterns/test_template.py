"""Workflow templates: typed parameters validated at instantiate, seen by every run."""

from __future__ import annotations

import pytest

from deerflow import (
    DefinitionError,
    Engine,
    TemplateParameterError,
    Workflow,
    WorkflowTemplate,
)


def pipeline_template() -> WorkflowTemplate:
    template = WorkflowTemplate(
        name="data_pipeline_template",
        parameters={
            "source_type": {"type": "string", "enum": ["s3", "gcs", "azure"]},
            "destination": {"type": "string", "minLength": 2, "description": "warehouse"},
            "parallelism": {"type": "integer", "default": 5, "minimum": 1, "maximum": 64},
            "ratio": {"type": "number", "default": 0.5, "exclusiveMaximum": 1},
            "tags": {"type": "array", "items": {"type": "string"}, "required": False},
        },
    )

    @template.task(id="extract")
    def extract(context):
        return {"source": context.params["source_type"], "n": context.params["parallelism"]}

    @template.parallel_tasks(id="split", depends_on=["extract"], over="extract.items")
    def never(item, context):
        return item

    return template


def test_instantiate_fills_defaults_and_gives_a_new_workflow_with_the_template_tasks():
    template = pipeline_template()
    wf = template.instantiate(
        name="s3_to_warehouse", parameters={"source_type": "s3", "destination": "snowflake"}
    )
    assert isinstance(wf, Workflow) and wf.name == "s3_to_warehouse"
    assert list(wf.tasks) == ["extract", "split"]
    assert dict(wf.default_params) == {
        "source_type": "s3",
        "destination": "snowflake",
        "parallelism": 5,
        "ratio": 0.5,
        "tags": None,
    }


async def test_runs_see_template_parameters_under_their_own_params():
    template = WorkflowTemplate(
        name="tpl",
        parameters={
            "source_type": {"type": "string", "enum": ["s3", "gcs"]},
            "destination": {"type": "string"},
            "parallelism": {"type": "integer", "default": 5},
        },
    )

    @template.task(id="extract")
    def extract(context):
        return dict(context.params)

    @template.task(id="load", depends_on=["extract"])
    def load(context):
        return {"to": context.params["destination"], "seen": context.tasks["extract"].output}

    s3 = template.instantiate(
        name="s3_pipe", parameters={"source_type": "s3", "destination": "snowflake"}
    )
    gcs = template.instantiate(
        name="gcs_pipe", parameters={"source_type": "gcs", "destination": "bigquery"}
    )
    async with Engine("memory://", [s3, gcs]) as engine:
        one = await (await engine.start(s3)).result(timeout=30)
        two = await (
            await engine.start(gcs, params={"destination": "redshift", "day": "d"})
        ).result(timeout=30)
    assert one.output == {
        "to": "snowflake",
        "seen": {"source_type": "s3", "destination": "snowflake", "parallelism": 5},
    }
    assert two.output["to"] == "redshift"  # a run param wins over the template's
    assert two.output["seen"] == {
        "source_type": "gcs",
        "destination": "redshift",
        "parallelism": 5,
        "day": "d",
    }


@pytest.mark.parametrize(
    ("given", "parameter", "rule"),
    [
        ({"source_type": "ftp", "destination": "db"}, "source_type", "enum"),
        ({"source_type": "s3"}, "destination", "required"),
        ({"source_type": "s3", "destination": "x"}, "destination", "minLength"),
        ({"source_type": "s3", "destination": "db", "parallelism": 0}, "parallelism", "minimum"),
        ({"source_type": "s3", "destination": "db", "parallelism": 65}, "parallelism", "maximum"),
        ({"source_type": "s3", "destination": "db", "parallelism": "5"}, "parallelism", "type"),
        ({"source_type": "s3", "destination": "db", "ratio": 1}, "ratio", "exclusiveMaximum"),
        ({"source_type": "s3", "destination": "db", "tags": [1]}, "tags", "type"),
        ({"source_type": "s3", "destination": "db", "colour": "red"}, "colour", "unknown"),
    ],
)
def test_invalid_parameters_name_the_parameter_and_the_rule(given, parameter, rule):
    with pytest.raises(TemplateParameterError) as caught:
        pipeline_template().instantiate(name="bad", parameters=given)
    error = caught.value
    assert isinstance(error, DefinitionError)
    assert (error.parameter, error.rule) == (parameter, rule)
    assert repr(parameter) in str(error) and rule in str(error)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"p": {"type": "text"}}, "'type' must be one of"),
        ({"p": {"type": "integer", "default": 0, "minimum": 1}}, "default 0 breaks minimum"),
        ({"p": {"type": "string", "enum": []}}, "'enum' must be a non-empty list"),
        ({"p": {"type": "string", "maxlength": 3}}, "unknown keys ['maxlength']"),
        ({"not-an-identifier": {"type": "string"}}, "must be an identifier"),
    ],
)
def test_a_bad_schema_is_refused_when_the_template_is_defined(parameters, message):
    with pytest.raises(DefinitionError, match=r"template 'tpl'.*") as caught:
        WorkflowTemplate(name="tpl", parameters=parameters)
    assert message in str(caught.value)


def test_a_loop_fails_where_the_template_task_is_written_an_unknown_task_at_instantiate():
    template = WorkflowTemplate(name="tpl_dep", parameters={})

    @template.task(id="load", depends_on=["extract"])  # declared below: allowed
    def load(context):
        return None

    with pytest.raises(DefinitionError, match="dependency cycle: load → extract → load"):

        @template.task(id="extract", depends_on=["load"])
        def extract(context):
            return None

    with pytest.raises(DefinitionError, match="unknown task 'extract'"):
        template.instantiate("tpl_dep_1")


def test_a_template_is_not_a_workflow_compose_can_find_by_name():
    from deerflow.workflow._catalog import lookup

    WorkflowTemplate(name="only_a_template", parameters={})
    assert lookup("only_a_template") is None
