"""Patterns built on the core's expanding nodes and child runs.

* dynamic tasks (:mod:`~deerflow.patterns.dynamic`, :class:`DynamicTasks`);
* fan-out / fan-in (:mod:`~deerflow.patterns.fanout`, :func:`parallel`, :func:`gather`);
* map-reduce (:mod:`~deerflow.patterns.mapreduce`, :class:`MapReduce`);
* sub-workflows (:class:`SubWorkflow`).

Whole-workflow builders (:func:`deerflow.compose_workflows`, :class:`deerflow.WorkflowTemplate`)
make public :class:`deerflow.Workflow` objects, so they live with it in :mod:`deerflow.workflow`.
"""

from deerflow.patterns._api import PatternsMixin
from deerflow.patterns.fanout import ParallelNode, gather, parallel
from deerflow.patterns.mapreduce import MapReduce
from deerflow.patterns.subworkflow import SubWorkflow
from deerflow.patterns.tasktypes import DynamicTasks, TaskSpec, TaskType

__all__ = [
    "DynamicTasks",
    "MapReduce",
    "ParallelNode",
    "PatternsMixin",
    "SubWorkflow",
    "TaskSpec",
    "TaskType",
    "gather",
    "parallel",
]
