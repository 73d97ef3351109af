"""``python -m bench [--quick] [--only a,c] [--pairs N] [--out DIR]``: run the benchmark.

Every scenario runs baseline and engine alternately in this process tree and writes
``<stem>.json`` and ``<stem>.md`` into ``bench/results/`` (``--out`` elsewhere). ``--quick``
is the CI smoke size: small workloads, two pairs, no goals enforced anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import time
from pathlib import Path

from bench.context import BenchContext, kafka_broker
from bench.harness import Settings, skipped_rows
from bench.report import machine_info, markdown_table, write_report
from bench.services import ServiceUnavailable

SCENARIOS = {
    "a": ("overhead", "a. engine overhead"),
    "b": ("latency", "b. trigger latency"),
    "c": ("fanout", "c. fan-out scaling"),
    "d": ("mapreduce", "d. mapreduce"),
    "e": ("backpressure", "e. backpressure"),
    "f": ("peers", "f. peers"),
    "g": ("eventwaits", "g. event waits"),
}
RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke size (about a minute)")
    parser.add_argument(
        "--only",
        default="",
        help="scenario letters or names, e.g. a,c or overhead,fanout (default: all)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="baseline/engine pairs per comparison (default 5; quick 2)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="warm-up pairs (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the report")
    parser.add_argument(
        "--stem", default=None, help="report file name without extension (default: latest or quick)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log every pair (the default except with --quick)",
    )
    return parser.parse_args(argv)


def _selected(only: str) -> list[str]:
    if not only:
        return list(SCENARIOS)
    wanted = {part.strip() for part in only.split(",") if part.strip()}
    chosen = [key for key, (module, _) in SCENARIOS.items() if key in wanted or module in wanted]
    unknown = wanted - set(chosen) - {SCENARIOS[k][0] for k in chosen}
    if unknown:
        raise SystemExit(
            f"unknown scenarios: {', '.join(sorted(unknown))} "
            f"(choose from {', '.join(m for m, _ in SCENARIOS.values())})"
        )
    return chosen


async def _run(ctx: BenchContext, keys: list[str]) -> None:
    for key in keys:
        module_name, title = SCENARIOS[key]
        started = time.monotonic()
        log.info("== %s", title)
        module = importlib.import_module(f"bench.scenarios.{module_name}")
        try:
            await module.run(ctx)
        except ServiceUnavailable as exc:
            ctx.add(skipped_rows(title, "-", str(exc)))
        log.info("== %s took %.1fs", title, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and write the report; the exit code is 0 unless it crashed."""
    args = _parse(argv)
    level = logging.INFO if args.verbose or not args.quick else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    # The engine's own INFO logs (group joins, rebuilds) would drown the benchmark's.
    logging.getLogger("deerflow").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    settings = Settings(pairs=args.pairs or (2 if args.quick else 5), warmup=args.warmup)
    ctx = BenchContext(quick=args.quick, settings=settings)
    started, info = time.time(), machine_info()
    try:
        asyncio.run(_run(ctx, _selected(args.only)))
    finally:
        ctx.close()
    stem = args.stem or ("quick" if args.quick else "latest")
    json_path, md_path = write_report(
        ctx.rows,
        args.out,
        stem=stem,
        quick=args.quick,
        started=started,
        info=info,
        settings={
            "pairs": settings.pairs,
            "warmup": settings.warmup,
            "only": args.only,
            "sizes": vars(ctx.sizes) if hasattr(ctx.sizes, "__dict__") else {},
            "kafka": kafka_broker(),
        },
    )
    print(markdown_table(ctx.rows))
    print(f"\nwrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
