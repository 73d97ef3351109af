"""What the dashboard uses of choreography: handing a dead-lettered event to its handler again.

Imported from here, never from choreography's private modules (``lint-imports`` checks it).
"""

from deerflow.choreography._service import handle_again

__all__ = ["handle_again"]
