"""What ``deerflow.serve`` shares with the CLI: loading the workflows of a Python file.

Imported from here, never from the CLI's private modules (``lint-imports`` checks it).
"""

from deerflow._userfile import load_module_workflows

__all__ = ["load_module_workflows"]
