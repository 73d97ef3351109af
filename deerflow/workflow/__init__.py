"""The public :class:`Workflow`: the core definition, every feature's decorators, and ``run()``.

This is where the layers meet: :class:`~deerflow.core.WorkflowDef` composed with the mixins
of the features (patterns, sagas, state machines, pipelines, choreography), carrying the
plugins its engine needs (tracing; choreography; a pipeline's service), plus the builders of
whole workflows (:func:`compose_workflows`, :class:`WorkflowTemplate`).
"""

from deerflow.workflow._compose import compose_workflows
from deerflow.workflow._definition import DEFAULT_PLUGINS, Workflow
from deerflow.workflow._template import TemplateParameterError, WorkflowTemplate

__all__ = [
    "DEFAULT_PLUGINS",
    "TemplateParameterError",
    "Workflow",
    "WorkflowTemplate",
    "compose_workflows",
]
