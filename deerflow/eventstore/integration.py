"""What features built on the event store use besides its public API.

Choreography and the Faust bridge import these from here, never from the event store's
private modules (``lint-imports`` checks it).
"""

from deerflow.eventstore._store_loop import running_loop
from deerflow.eventstore._store_model import decode_unit, derived_id, encode_unit
from deerflow.eventstore._store_origin import PROCESS, PublishScope, current_scope, scope_now

__all__ = [
    "PROCESS",
    "PublishScope",
    "current_scope",
    "decode_unit",
    "derived_id",
    "encode_unit",
    "running_loop",
    "scope_now",
]
