"""Streaming pipelines with bounded buffers and backpressure."""

from deerflow.pipeline._api import PipelineMixin

__all__ = ["PipelineMixin"]
