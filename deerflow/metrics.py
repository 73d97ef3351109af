"""Importable from here too: it lives in :mod:`deerflow.observability.metrics`."""

from deerflow.observability.metrics import *  # noqa: F403  (the same public names)
from deerflow.observability.metrics import __all__ as __all__
