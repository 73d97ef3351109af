"""What the dashboard and the startup checks share with the trigger sources' HTTP side.

Imported from here, never from the connectors' private modules (``lint-imports`` checks it).
"""

from deerflow.connectors._auth import presented_key
from deerflow.connectors._httplimits import HttpLimits, cap_connections
from deerflow.connectors._replies import json_reply, unauthorized

__all__ = ["HttpLimits", "cap_connections", "json_reply", "presented_key", "unauthorized"]
