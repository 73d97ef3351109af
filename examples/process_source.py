"""Process one data source: the script each dynamic task of ``dynamic_workflows.py`` runs.

    python examples/process_source.py file:///path/to/buckets/data-orders

Counts the records (non-empty lines after a header) of every file under the source and prints
the result as JSON on its last line, which deerflow takes as the task's output. Anything
printed before is just log. A missing source exits non-zero, which fails the task (and its
message on stderr is in the task's error).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse


def source_path(uri: str) -> Path:
    """A ``file://`` URI or a plain path as a local path."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


def count_records(path: Path) -> tuple[int, int]:
    """(files, records) under ``path``."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    records = 0
    for file in files:
        with file.open(encoding="utf-8") as handle:
            records += max(0, sum(1 for line in handle if line.strip()) - 1)
    return len(files), records


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: process_source.py URI", file=sys.stderr)
        return 2
    path = source_path(argv[1])
    if not path.is_dir():
        print(f"source {argv[1]} does not exist", file=sys.stderr)
        return 1
    print(f"processing {path} for task {os.environ.get('DEERFLOW_TASK_ID', '?')}")
    files, records = count_records(path)
    print(json.dumps({"source": path.name, "files": files, "count": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
