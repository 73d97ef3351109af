"""``Pipeline``: the base class whose ``@stage`` methods make a streaming pipeline.

The spec writes ``@stage(...)`` inside the class body without importing ``stage``; the
metaclass makes that work by putting ``stage`` into the namespace the class body runs in (and
taking it out again afterwards, so it does not become an attribute). ``from deerflow import
stage`` works as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from deerflow.errors import DefinitionError
from deerflow.pipeline._backpressure import Backpressure
from deerflow.pipeline._stage import RESERVED_NAMES, StageDef, collect_stages, stage


class PipelineMeta(type):
    """Makes ``stage`` visible in class bodies and collects the stages of each class."""

    @classmethod
    def __prepare__(
        cls, name: str, bases: tuple[type, ...], /, **kwargs: Any
    ) -> MutableMapping[str, object]:
        return {"stage": stage}

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> PipelineMeta:
        if namespace.get("stage") is stage:
            namespace = {k: v for k, v in namespace.items() if k != "stage"}
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        cls.__stages__ = collect_stages(cls)
        return cls

    __stages__: tuple[StageDef, ...]


class Pipeline(metaclass=PipelineMeta):
    """Base of a streaming pipeline: each ``@stage`` method is one step, in definition order.

    Example::

        workflow = Workflow(name="streaming_pipeline")

        @workflow.pipeline(backpressure=Backpressure(max_buffer_size=1000, strategy="block"))
        class DataPipeline(Pipeline):
            @stage(parallelism=5)
            def extract(self, item):
                return fetch_record(item)

            @stage(parallelism=3, batch_size=100)
            def load(self, batch):
                return bulk_insert(batch)

        result = workflow.run(input=items)   # streams items through, returns when drained

    One instance serves a whole run; ``self.params`` holds the run's parameters. Stages with
    ``parallelism > 1`` are called concurrently (from several threads if sync), so state kept
    on ``self`` must be safe for that.
    """

    params: Mapping[str, Any] = MappingProxyType({})
    __stages__: ClassVar[tuple[StageDef, ...]] = ()


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline as a workflow declares it: the class and how it is fed and drained.

    Attributes:
        cls: the :class:`Pipeline` subclass.
        backpressure: the bound and strategy.
        source: where items come from when no ``input`` is given (a ``Source`` or iterable).
        sink: where the last stage's outputs go (a ``Sink`` or a callable), if anywhere.
        dead_letter: where items that failed for good go (a ``Sink`` or a callable).
        key: a function of an item giving its key (ordering); default: the source's key.
    """

    cls: type[Pipeline]
    backpressure: Backpressure
    source: Any = None
    sink: Any = None
    dead_letter: Any = None
    key: Callable[[Any], Any] | None = None

    @property
    def stages(self) -> tuple[StageDef, ...]:
        """The stages in order."""
        return self.cls.__stages__

    def validate(self, where: str) -> None:
        """Raise :class:`DefinitionError` (prefixed with ``where``) if the pipeline is invalid."""
        if not (isinstance(self.cls, type) and issubclass(self.cls, Pipeline)):
            raise DefinitionError(f"{where}: @pipeline decorates a subclass of deerflow.Pipeline")
        if not isinstance(self.backpressure, Backpressure):
            raise DefinitionError(f"{where}: backpressure must be a Backpressure(...)")
        if not self.stages:
            raise DefinitionError(f"{where}: pipeline {self.cls.__name__} has no @stage methods")
        bound = self.backpressure.max_buffer_size
        for st in self.stages:
            if st.name in RESERVED_NAMES:
                raise DefinitionError(f"{where}, stage {st.name!r}: the name is reserved")
            size = st.options.batch_size
            if bound is not None and size is not None and size > bound:
                raise DefinitionError(
                    f"{where}, stage {st.name!r}: batch_size {size} exceeds max_buffer_size"
                    f" {bound}, so no batch could ever fill"
                )
        if self.key is not None and not callable(self.key):
            raise DefinitionError(f"{where}: key must be a function of an item")
