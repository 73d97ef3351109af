"""Importable from here too: it lives in :mod:`deerflow.observability.logs`."""

from deerflow.observability.logs import *  # noqa: F403  (the same public names)
from deerflow.observability.logs import __all__ as __all__
