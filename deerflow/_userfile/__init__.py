"""The user's workflow file, as every surface loads it: its workflows, and its errors shown as
Python shows them for that file (no deerflow frames).

Shared by the CLI and ``deerflow.serve``; it imports neither, so either can be imported first.
"""

from deerflow._userfile._loader import load_module_workflows
from deerflow._userfile._tracebacks import as_python_shows, users_frames

__all__ = ["as_python_shows", "load_module_workflows", "users_frames"]
