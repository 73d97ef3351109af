"""Choreography: event handlers subscribed to the domain-events log, and ``publish_event``."""

from __future__ import annotations


class ChoreographyMixin:
    """``Workflow.event_handler``: filled in by the choreography module."""
