"""Per-stage counters and latencies of a running pipeline, as plain dicts for reports."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

LATENCY_WINDOW = 1024


class LatencyWindow:
    """Durations of the latest calls (a bounded window, so memory stays flat), in seconds."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self._recent: deque[float] = deque(maxlen=size)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        """Record one duration."""
        self._recent.append(seconds)
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def summary(self) -> dict[str, float]:
        """Mean and max over all calls; p50 and p99 over the latest window; milliseconds."""
        recent = sorted(self._recent)
        return {
            "mean_ms": _ms(self.total / self.count) if self.count else 0.0,
            "p50_ms": _ms(_quantile(recent, 0.50)),
            "p99_ms": _ms(_quantile(recent, 0.99)),
            "max_ms": _ms(self.max),
        }


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@dataclass
class StageMetrics:
    """What one stage did. Counts are of source items (a batch of 100 counts 100).

    Attributes:
        processed: items the stage handled successfully.
        failed: items that exhausted their retries here and were dead-lettered.
        dropped: items its buffer let go under the ``drop``/``sample`` strategies (first stage).
        errors: failed attempts, including those retried successfully.
        retries: attempts made after a failure.
        calls: calls of the stage function (batches count once).
        busy: calls running now.
        last_error: the text of the most recent error.
    """

    name: str
    processed: int = 0
    failed: int = 0
    dropped: int = 0
    errors: int = 0
    retries: int = 0
    calls: int = 0
    busy: int = 0
    last_error: str | None = None
    latency: LatencyWindow = field(default_factory=LatencyWindow)

    def snapshot(
        self, *, queue_depth: int, peak_queue_depth: int, elapsed: float
    ) -> dict[str, Any]:
        """The metrics as a JSON-ready dict; throughput is processed items per second."""
        return {
            "processed": self.processed,
            "failed": self.failed,
            "dropped": self.dropped,
            "errors": self.errors,
            "retries": self.retries,
            "calls": self.calls,
            "in_progress": self.busy,
            "queue_depth": queue_depth,
            "peak_queue_depth": peak_queue_depth,
            "throughput_per_s": round(self.processed / elapsed, 2) if elapsed > 0 else 0.0,
            "latency": self.latency.summary(),
            "last_error": self.last_error,
        }
