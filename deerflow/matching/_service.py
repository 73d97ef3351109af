"""The matching service: a router that re-keys both sides of a match, and the index.

Two consumer groups per deployment, both run by every engine whose workflows wait for events
or cancel on one (they carry :data:`MATCHING`):

* the **router** (``<prefix>.matching.router``) reads the history and the domain events. A
  wait that began (:class:`EventWaitStarted`), a run of a workflow with ``cancel_on`` that
  started, and every domain event of a type some workflow waits for become records of the
  ``<prefix>.matching`` topic keyed by (event type, event paths, values): a repartition, as
  Kafka Streams does for a join. A wait and the events that meet it land in one partition.
  Waits of runs that ended are retired the same way (an ``end`` record under their key).
* the **index** (``<prefix>.matching``) holds, per assigned partition, a
  :class:`~deerflow.matching._index.PartitionIndex`. An event looks its key up (no scan of the
  waiting runs); each wait it meets gets its resuming history event, whose id is the wait's
  and the event's, so a duplicate resumes nothing. On assignment a partition's index is
  rebuilt from the partition: records before the group's committed
  offset only fill the index, later ones also resume (what a killed member matched but had
  not appended). Input is committed only with the resumes it caused (at least once).
  The rebuild runs beside the poll loop and reads a bounded window (see
  :mod:`deerflow.matching._rebuild`).
"""

from __future__ import annotations

from collections.abc import Iterable

from deerflow.matching._kind import WAIT_FOLD
from deerflow.matching._matcher import Matcher
from deerflow.matching._router import Router
from deerflow.runtime import Engine, Plugin, Service
from deerflow.runtime.plugins import FoldsPlugin

#: Histories are folded without their definitions (a CLI, the run index): every engine adopts
#: this plugin (``deerflow.workflow.DEFAULT_PLUGINS``), whatever workflows it serves.
EVENT_WAIT_PLUGIN = FoldsPlugin(WAIT_FOLD)


class MatchingPlugin(Plugin):
    """Runs the router and the index in engines whose workflows wait for events."""

    def services(self, engine: Engine) -> Iterable[Service]:
        """The engine's router and index."""
        return [Router(engine), Matcher(engine)]


MATCHING = MatchingPlugin()
