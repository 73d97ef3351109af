"""Runs that wait for events: ``wait_for_event`` nodes and ``cancel_on``.

``@wf.wait_for_event(id=..., event="InvoiceApproved", match={"data.invoice_id":
"params.invoice_id"}, timeout="7d")`` adds a node whose output is the first matching domain
event (``publish_event``, ``EventStore.publish``, handlers; with ``source=``, a Kafka topic's
messages, a webhook path's requests or an S3 bucket's object events); ``Workflow(...,
cancel_on=[CancelOn(event=..., match={...})])`` cancels a run when one arrives. Matching goes
through an index keyed by (event type, match value), never a scan of the waiting runs; see
:mod:`deerflow.matching._service` and the guide *Waiting for events*.
"""

from deerflow.matching._api import CancelOn, MatchingMixin
from deerflow.matching._kind import (
    WAIT_FOR_EVENT,
    WAITING,
    EventMatched,
    EventWaitStarted,
    EventWaitTimedOut,
    WaitForEventKind,
    WaitOptions,
)
from deerflow.matching._matcher import Matcher
from deerflow.matching._router import Router
from deerflow.matching._service import EVENT_WAIT_PLUGIN, MATCHING, MatchingPlugin

__all__ = [
    "EVENT_WAIT_PLUGIN",
    "MATCHING",
    "WAITING",
    "WAIT_FOR_EVENT",
    "CancelOn",
    "EventMatched",
    "EventWaitStarted",
    "EventWaitTimedOut",
    "Matcher",
    "MatchingMixin",
    "MatchingPlugin",
    "Router",
    "WaitForEventKind",
    "WaitOptions",
]
