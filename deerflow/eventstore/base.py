"""The event log's interface, importable from here too: it lives in :mod:`deerflow.log.base`."""

from deerflow.log.base import *  # noqa: F403  (the same public names)
from deerflow.log.base import __all__ as __all__
