"""MapReduce: count error types across a day of log files, spread over every worker.

The spec's "MapReduce Pattern" sample as written, plus local stand-ins for the helpers it
calls. Run it with::

    deerflow run examples/mapreduce.py:distributed_analysis --param date=2026-11-29

or spread the map tasks over several processes on Kafka::

    deerflow worker examples/mapreduce.py --store kafka://localhost:9092   # in 2+ terminals
    deerflow run examples/mapreduce.py:distributed_analysis --param date=2026-11-29 \
        --store kafka://localhost:9092

``partition`` lists the day's log files (written under ``./logs/<date>/`` on first use, 120
files standing in for a log archive); they are grouped into at most 100 map tasks; 10 partial
reduces each take a tenth of the map results before the final ``reduce``. Because
``LogAnalysis`` defines no ``combine``, the partial reduces forward their slice unchanged;
``LogAnalysisWithCombine`` below shows the same job whose partial reduces add counts up.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

from deerflow import MapReduce, Workflow

LOG_FILES_PER_DAY = 120
LINES_PER_FILE = 50
ERROR = re.compile(r"\bERROR (\w+)")
KINDS = ["Timeout", "ConnectionReset", "DiskFull", "AuthDenied"]


def list_log_files(date: str) -> list[str]:
    """Stand-in for listing a log archive: the day's files, written on first use."""
    folder = Path("logs") / date
    if not folder.exists():
        folder.mkdir(parents=True)
        rng = random.Random(date)  # the same day always gives the same logs
        for index in range(LOG_FILES_PER_DAY):
            lines = [
                f"{date}T00:{n % 60:02d} ERROR {rng.choice(KINDS)} in request {n}"
                if rng.random() < 0.3
                else f"{date}T00:{n % 60:02d} INFO ok {n}"
                for n in range(LINES_PER_FILE)
            ]
            (folder / f"app-{index:03d}.log").write_text("\n".join(lines) + "\n")
    return [str(p.resolve()) for p in sorted(folder.glob("*.log"))]


def read_log_file(file_path: str) -> Iterator[str]:
    """The lines of one log file."""
    with open(file_path, encoding="utf-8") as handle:
        yield from handle


def extract_error_type(line: str) -> str | None:
    """``Timeout`` for ``... ERROR Timeout ...``, else ``None``."""
    match = ERROR.search(line)
    return match.group(1) if match else None


# -- The spec's sample ---------------------------------------------------------------------------

workflow = Workflow(name="distributed_analysis")


@workflow.map_reduce(id="analyze_logs", partitions=100, reduce_parallelism=10)
class LogAnalysis(MapReduce):
    def partition(self, context):
        """Partition input data."""
        log_files = list_log_files(context.params["date"])
        return [{"file": f} for f in log_files]

    def map(self, partition, context):
        """Process each partition."""
        file_path = partition["file"]
        counts = {}

        for line in read_log_file(file_path):
            error_type = extract_error_type(line)
            if error_type:
                counts[error_type] = counts.get(error_type, 0) + 1

        return counts

    def reduce(self, results, context):
        """Combine all results."""
        combined = {}
        for result in results:
            for error_type, count in result.items():
                combined[error_type] = combined.get(error_type, 0) + count

        return {"total_errors": sum(combined.values()), "by_type": combined}


# -- The same job with real partial reduces -----------------------------------------------------

with_combine = Workflow(name="distributed_analysis_combined")


@with_combine.map_reduce(id="analyze_logs", partitions=100, reduce_parallelism=10)
class LogAnalysisWithCombine(LogAnalysis):
    def combine(self, results, context):
        """A partial reduce: one map-shaped count standing for a slice of map results."""
        merged: dict[str, int] = {}
        for result in results:
            for error_type, count in result.items():
                merged[error_type] = merged.get(error_type, 0) + count
        return merged
