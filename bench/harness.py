"""The harness: paired baseline/engine runs in one process tree, reported as ratios.

A :class:`Comparison` names two measurements, a baseline and the engine, each an async
function returning metrics (``{"p50_ms": 3.1, "p99_ms": 8.0}``, ``{"rate": 1200.0}``). The
harness runs them alternately after a warm-up (A B A B ..., so slow drift of a shared,
noisy machine hits both sides alike), takes the ratio engine/baseline of every metric within
each pair, and reports the median ratio with its spread (min..max over the pairs). A
comparison without a baseline reports the engine's own value (e.g. bytes per pending task).

Nothing here asserts: a goal is data shown next to the number ("holds" or "misses"), never a
test failure. Timing is the measurement functions' business (each times only its workload,
never process start-up or group joins).
"""

from __future__ import annotations

import logging
import statistics
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

log = logging.getLogger("bench")

Metrics = Mapping[str, float]
Measure = Callable[[], Awaitable[Metrics]]


class Skip(Exception):
    """Raised by a scenario or measurement that cannot run here; the row says why."""


class Pending(Exception):
    """Raised for a scenario whose engine feature is not ready yet."""


@dataclass(frozen=True)
class Goal:
    """A bound on a ratio (or on a value, for comparisons without baseline).

    Args:
        op: ``">="`` (at least) or ``"<="`` (at most).
        value: the bound.
        stretch: a second, harder bound shown alongside.
    """

    op: Literal[">=", "<="]
    value: float
    stretch: float | None = None

    def holds(self, measured: float, bound: float | None = None) -> bool:
        """Whether ``measured`` meets the goal (or ``bound`` instead of its value)."""
        limit = self.value if bound is None else bound
        return measured >= limit if self.op == ">=" else measured <= limit

    def describe(self, unit: str = "x") -> str:
        """``≥ 0.3x`` or ``≤ 12x`` (with the stretch goal if any)."""
        sign = "≥" if self.op == ">=" else "≤"
        text = f"{sign} {self.value:g}{unit}"
        if self.stretch is not None:
            text += f" (stretch {self.stretch:g}{unit})"
        return text


@dataclass(frozen=True)
class Metric:
    """One number a measurement returns, and how to judge it.

    Args:
        key: its key in the measurement's result.
        label: the row's name.
        unit: unit of the absolute numbers (``msg/s``, ``ms``, ``B``).
        goal: bound on the ratio engine/baseline, or on the value without baseline.
    """

    key: str
    label: str
    unit: str
    goal: Goal | None = None


@dataclass
class Comparison:
    """Baseline vs engine on one workload.

    Args:
        scenario: the scenario's letter and name (``a. engine overhead``).
        name: what this comparison measures (``kafka p=4 w=2``).
        baseline_label: what the baseline is (``aiokafka relay``).
        engine_label: what the engine side is.
        baseline: the baseline measurement; ``None`` for a value-only comparison.
        engine: the engine measurement.
        metrics: the numbers to report.
        note: shown under the table.
    """

    scenario: str
    name: str
    baseline_label: str
    engine_label: str
    baseline: Measure | None
    engine: Measure
    metrics: list[Metric]
    note: str = ""


@dataclass
class Row:
    """One reported number: medians of both sides, the ratio's median and spread, the goal."""

    scenario: str
    comparison: str
    metric: str
    unit: str
    baseline_label: str
    engine_label: str
    status: str = "ok"
    baseline: float | None = None
    engine: float | None = None
    ratio: float | None = None
    ratio_min: float | None = None
    ratio_max: float | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    goal: str = ""
    goal_holds: bool | None = None
    stretch_holds: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        return asdict(self)


@dataclass
class Settings:
    """How many pairs and warm-ups each comparison runs."""

    pairs: int = 5
    warmup: int = 1


def _rows_for(comparison: Comparison, status: str) -> list[Row]:
    return [
        Row(
            comparison.scenario,
            comparison.name,
            m.label,
            m.unit,
            comparison.baseline_label,
            comparison.engine_label,
            status=status,
            goal=m.goal.describe("" if comparison.baseline is None else "x") if m.goal else "",
            note=comparison.note,
        )
        for m in comparison.metrics
    ]


def _judge(row: Row, metric: Metric, base: list[float] | None, eng: list[float]) -> Row:
    row.engine = statistics.median(eng)
    row.samples["engine"] = eng
    if base is None:
        ratios = eng
    else:
        row.baseline = statistics.median(base)
        row.samples["baseline"] = base
        ratios = [e / b if b else float("inf") for b, e in zip(base, eng, strict=True)]
        row.samples["ratio"] = ratios
    row.ratio = statistics.median(ratios)
    row.ratio_min, row.ratio_max = min(ratios), max(ratios)
    if metric.goal is not None:
        row.goal_holds = metric.goal.holds(row.ratio)
        if metric.goal.stretch is not None:
            row.stretch_holds = metric.goal.holds(row.ratio, metric.goal.stretch)
    return row


async def run_comparison(comparison: Comparison, settings: Settings) -> list[Row]:
    """Warm up, then run ``settings.pairs`` pairs (baseline, engine) and judge each metric."""
    label = f"{comparison.scenario} / {comparison.name}"
    log.info("%s: warm-up", label)
    started = time.monotonic()
    try:
        for _ in range(settings.warmup):
            if comparison.baseline is not None:
                await comparison.baseline()
            await comparison.engine()
        base: list[Metrics] = []
        eng: list[Metrics] = []
        for pair in range(settings.pairs):
            if comparison.baseline is not None:
                base.append(await comparison.baseline())
            eng.append(await comparison.engine())
            log.info(
                "%s: pair %d/%d baseline=%s engine=%s",
                label,
                pair + 1,
                settings.pairs,
                _short(base[-1]) if base else "-",
                _short(eng[-1]),
            )
    except (Skip, Pending) as exc:
        kind = "skipped" if isinstance(exc, Skip) else "pending"
        return _rows_for(comparison, f"{kind}: {exc}")
    except Exception as exc:  # a broken scenario must not end the whole benchmark
        log.error("%s failed:\n%s", label, traceback.format_exc())
        return _rows_for(comparison, f"error: {type(exc).__name__}: {exc}")
    log.info("%s: done in %.1fs", label, time.monotonic() - started)
    rows = _rows_for(comparison, "ok")
    for row, metric in zip(rows, comparison.metrics, strict=True):
        _judge(
            row,
            metric,
            [m[metric.key] for m in base] if base else None,
            [m[metric.key] for m in eng],
        )
    return rows


def _short(metrics: Metrics) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def skipped_rows(scenario: str, name: str, reason: str, status: str = "skipped") -> list[Row]:
    """One row saying a whole scenario (or part) did not run, and why."""
    return [Row(scenario, name, "-", "", "", "", status=f"{status}: {reason}")]
