"""Names of the topics and consumer groups one deerflow deployment uses."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_PREFIX = "deerflow"


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic and group names, all derived from one prefix (``DEERFLOW_PREFIX``).

    Two deployments on one Kafka cluster stay apart by using different prefixes.
    """

    prefix: str = DEFAULT_PREFIX

    @classmethod
    def from_env(cls, prefix: str | None = None) -> Topics:
        """Topics for ``prefix``, else ``DEERFLOW_PREFIX``, else ``deerflow``."""
        return cls(prefix or os.environ.get("DEERFLOW_PREFIX") or DEFAULT_PREFIX)

    @property
    def history(self) -> str:
        """Run histories, keyed by run id."""
        return f"{self.prefix}.history"

    @property
    def snapshots(self) -> str:
        """Snapshots of the history partitions' live state (partition p's in partition p)."""
        return f"{self.history}.snapshots"

    @property
    def archive_marks(self) -> str:
        """Marks of archived runs (their rows and archives), keyed by run id: every run index
        of a file of its own reads them."""
        return f"{self.history}.archived"

    @property
    def tasks(self) -> str:
        """The task queue workers consume."""
        return f"{self.prefix}.tasks"

    @property
    def events(self) -> str:
        """Domain events (choreography, event sourcing), keyed by correlation id."""
        return f"{self.prefix}.events"

    @property
    def dlq(self) -> str:
        """Dead letters: input that could not be processed, with the reason."""
        return f"{self.prefix}.dlq"

    @property
    def orchestrator_group(self) -> str:
        """The consumer group whose members own history partitions."""
        return f"{self.prefix}.orchestrator"

    @property
    def snapshot_group(self) -> str:
        """A group no process consumes: its commits say where each partition's newest
        snapshot is."""
        return f"{self.orchestrator_group}.snapshots"

    @property
    def worker_group(self) -> str:
        """The consumer group whose members run tasks."""
        return f"{self.prefix}.workers"
