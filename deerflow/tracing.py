"""Importable from here too: it lives in :mod:`deerflow.observability.tracing`."""

from deerflow.observability.tracing import *  # noqa: F403  (the same public names)
from deerflow.observability.tracing import __all__ as __all__
