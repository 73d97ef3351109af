"""Observability: OpenTelemetry tracing, Prometheus metrics and structured logs.

They attach to the runtime from outside: tracing through hooks (:data:`~.tracing.TRACING`,
carried by every :class:`deerflow.Workflow`) and, like metrics, by following the run index;
logs through a logging filter. ``deerflow.tracing``, ``deerflow.metrics`` and ``deerflow.logs``
remain importable.
"""
