"""``Workflow.pipeline``: filled in by the pipeline package."""

from __future__ import annotations


class PipelineMixin:
    """Adds ``Workflow.pipeline``."""
