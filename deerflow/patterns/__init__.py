"""Patterns built on the engine's expanding nodes and child runs.

* dynamic tasks (:mod:`~deerflow.patterns.dynamic`, :class:`DynamicTasks`);
* fan-out / fan-in (:mod:`~deerflow.patterns.fanout`, :func:`parallel`, :func:`gather`);
* map-reduce (:mod:`~deerflow.patterns.mapreduce`, :class:`MapReduce`);
* sub-workflows and composition (:class:`SubWorkflow`, :func:`compose_workflows`);
* parameterized templates (:class:`WorkflowTemplate`).
"""

from deerflow.patterns.compose import compose_workflows
from deerflow.patterns.fanout import ParallelNode, gather, parallel
from deerflow.patterns.mapreduce import MapReduce
from deerflow.patterns.subworkflow import SubWorkflow
from deerflow.patterns.tasktypes import DynamicTasks, TaskSpec, TaskType
from deerflow.patterns.template import TemplateParameterError, WorkflowTemplate

__all__ = [
    "DynamicTasks",
    "MapReduce",
    "ParallelNode",
    "SubWorkflow",
    "TaskSpec",
    "TaskType",
    "TemplateParameterError",
    "WorkflowTemplate",
    "compose_workflows",
    "gather",
    "parallel",
]
