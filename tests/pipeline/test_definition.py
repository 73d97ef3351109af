"""Declaring pipelines: the spec's sample as written, and definitions rejected when defined."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

import deerflow
from deerflow import Backpressure, DefinitionError, Engine, Pipeline, Workflow, stage
from tests.services import unique_name

# The spec's "Pipeline with Backpressure" block, verbatim: note it never imports `stage`.
SPEC_SAMPLE = textwrap.dedent("""
    from deerflow import Workflow, Pipeline, Backpressure

    workflow = Workflow(name="streaming_pipeline")

    @workflow.pipeline(
        backpressure=Backpressure(
            max_buffer_size=1000,
            strategy="block"  # block, drop, or sample
        )
    )
    class DataPipeline(Pipeline):
        @stage(parallelism=5)
        def extract(self, item):
            return fetch_record(item)

        @stage(parallelism=10)
        def transform(self, record):
            return transform_record(record)

        @stage(parallelism=3, batch_size=100)
        def load(self, batch):
            return bulk_insert(batch)
""")


def test_the_spec_sample_runs_as_written_and_streams_every_item():
    inserted: list[dict[str, int]] = []
    namespace: dict[str, Any] = {
        "fetch_record": lambda item: {"id": item},
        "transform_record": lambda record: {**record, "double": record["id"] * 2},
        "bulk_insert": lambda batch: inserted.extend(batch) or len(batch),  # type: ignore[func-returns-value]
    }
    exec(compile(SPEC_SAMPLE, "spec-sample", "exec"), namespace)
    workflow, data_pipeline = namespace["workflow"], namespace["DataPipeline"]

    assert [s.name for s in data_pipeline.__stages__] == ["extract", "transform", "load"]
    assert [s.options.parallelism for s in data_pipeline.__stages__] == [5, 10, 3]
    assert data_pipeline.__stages__[2].options.batch_size == 100
    assert not hasattr(data_pipeline, "stage"), "the injected decorator must not stay behind"

    result = workflow.run(input=range(2500))

    assert result.status == "completed", result.error
    assert sorted(row["id"] for row in inserted) == list(range(2500))
    assert all(row["double"] == row["id"] * 2 for row in inserted)
    assert result.output["items"]["completed"] == 2500
    assert set(result.tasks) == {"extract", "transform", "load"}
    assert result.tasks["load"].output["processed"] == 2500
    assert result.tasks["load"].output["calls"] >= 25  # batches of at most 100


def test_stage_can_be_imported_explicitly_and_stages_stay_plain_methods():
    class Doubler(Pipeline):
        @stage
        def double(self, item):
            return item * 2

        @stage(retries=2)
        async def describe(self, item):
            return f"<{item}>"

    assert [s.name for s in Doubler.__stages__] == ["double", "describe"]
    assert Doubler.__stages__[1].is_async
    assert Doubler().double(21) == 42
    assert "stage" in deerflow.__all__ and "Pipeline" in deerflow.__all__


def test_a_subclass_overrides_a_stage_in_place_and_appends_new_ones():
    class Base(Pipeline):
        @stage
        def parse(self, item):
            return item

        @stage
        def enrich(self, item):
            return item

    class Custom(Base):
        @stage(parallelism=4)
        def parse(self, item):
            return int(item)

        @stage
        def store(self, item):
            return item

    assert [s.name for s in Custom.__stages__] == ["parse", "enrich", "store"]
    assert Custom.__stages__[0].options.parallelism == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"parallelism": 0}, "parallelism must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"batch_timeout": -1}, "batch_timeout must be >= 0"),
    ],
)
def test_bad_stage_options_are_rejected_naming_the_stage(options, message):
    with pytest.raises(DefinitionError, match=rf"stage 'load': {message}"):

        class Bad(Pipeline):
            @stage(**options)
            def load(self, batch):
                return batch


def test_a_stage_must_take_one_item():
    with pytest.raises(DefinitionError, match=r"stage 'load': a stage is a method taking one"):

        class Bad(Pipeline):
            @stage
            def load(self):
                return None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_buffer_size": 0}, "max_buffer_size must be >= 1"),
        ({"strategy": "spill"}, "strategy must be one of block, drop, sample"),
    ],
)
def test_bad_backpressure_is_rejected(kwargs, message):
    with pytest.raises(DefinitionError, match=message):
        Backpressure(**kwargs)


def pipeline_with(**stage_options):
    class One(Pipeline):
        @stage(**stage_options)
        def work(self, item):
            return item

    return One


def test_workflow_level_mistakes_are_rejected_naming_the_workflow():
    wf = Workflow(name="p")

    class Empty(Pipeline):
        pass

    with pytest.raises(DefinitionError, match=r"workflow 'p': pipeline Empty has no @stage"):
        wf.pipeline(Empty)
    with pytest.raises(DefinitionError, match=r"batch_size 50 exceeds max_buffer_size 10"):
        wf.pipeline(backpressure=Backpressure(max_buffer_size=10))(pipeline_with(batch_size=50))
    with pytest.raises(DefinitionError, match=r"subclass of deerflow.Pipeline"):
        wf.pipeline(object)  # type: ignore[type-var]

    class Reserved(Pipeline):
        @stage
        def sink(self, item):
            return item

    with pytest.raises(DefinitionError, match=r"stage 'sink': the name is reserved"):
        wf.pipeline(Reserved)

    wf.pipeline(pipeline_with())
    with pytest.raises(DefinitionError, match="already has a pipeline"):
        wf.pipeline(pipeline_with())


def test_a_workflow_is_a_pipeline_or_a_dag_not_both():
    wf = Workflow(name="mixed")

    @wf.task(id="t")
    def t(context):
        return 1

    with pytest.raises(DefinitionError, match="has a pipeline and tasks"):
        wf.pipeline(pipeline_with())


async def test_an_engine_accepts_a_pipeline_workflow_without_tasks():
    wf = Workflow(name="registered_pipeline")
    wf.pipeline(pipeline_with())
    async with Engine(f"memory://{unique_name('log')}", [wf]) as engine:
        assert engine.registry.get("registered_pipeline") is wf
        # Its source is finite, so no service runs it under the engine.
        assert not [s for s in engine.services if getattr(s, "workflow", None) is wf]


def test_running_a_pipeline_whose_source_never_ends_needs_a_timeout_or_serve():
    from deerflow.pipeline import KafkaSource

    wf = Workflow(name="endless")
    wf.pipeline(source=KafkaSource("events", bootstrap_servers="127.0.0.1:1"))(pipeline_with())

    with pytest.raises(DefinitionError, match="give run\\(\\) a timeout, or serve it"):
        wf.run()
