"""The ``deerflow`` command line: ``run``, ``serve``, ``worker``, ``runs``, ``dlq``, ``events``
and ``ui``.

``_app`` defines the commands and their options; the other modules are what they call: runs
(``_run``, ``_runs``, ``_live``, ``_progress``), dead letters (``_dlq``, ``_letters``), the
event log (``_tail``, ``_ops``), tables that fit the terminal (``_table``), loading the user's
workflow file (``deerflow._userfile``, shared with ``deerflow.serve``) and what every
command shares (``_base``).
"""

from deerflow.cli._app import app, main

__all__ = ["app", "main"]
