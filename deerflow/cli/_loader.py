"""Load workflow definitions from a user's Python file (kept in :mod:`deerflow._userfile`)."""

from deerflow._userfile import load_module_workflows

__all__ = ["load_module_workflows"]
