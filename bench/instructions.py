"""``python -m bench.instructions [--tree DIR ...] [--small N] [--large N]``: CPU instructions
per step of a chain, counted by callgrind, for one or more checkouts side by side.

Wall-clock ratios on a shared machine swing by tens of percent; the number of instructions a
workload executes does not, so it shows small changes of the step path's cost. Each tree (a
checkout of deerflow: this one by default, another commit cloned elsewhere to compare) runs the
same child under ``valgrind --tool=callgrind`` at two sizes; the difference of the two totals
divided by the difference of steps is the cost of one step, the start-up excluded:

* ``engine``: 10-step no-op chains on an in-process engine over ``memory://`` (orchestrator,
  worker, outbox and run index in one process), ``N`` chains at once, two rounds;
* ``core``: the pure fold and decide of ``N`` 10-step chains (no I/O, no event loop).

Needs ``valgrind`` on the PATH; a run takes about a minute per tree.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = HERE / "_steps.py"
STEPS = 10
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def instructions(tree: Path, mode: str, size: int) -> int:
    """Instructions ``mode``'s workload of ``size`` chains runs in ``tree`` (start-up included)."""
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}/callgrind.out",
                sys.executable,
                str(CHILD),
                mode,
                str(size),
            ],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=True,
        )
    found = _REFS.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_step(tree: Path, mode: str, small: int, large: int) -> int:
    """Instructions per step: the marginal cost between ``small`` and ``large`` chains."""
    rounds = 2 if mode == "engine" else 1
    extra = (large - small) * STEPS * rounds
    return (instructions(tree, mode, large) - instructions(tree, mode, small)) // extra


def main(argv: list[str] | None = None) -> int:
    """Print instructions per step of each mode for each tree, and each tree's ratio to the
    first."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("--tree", type=Path, action="append", help="a checkout (repeatable)")
    parser.add_argument("--small", type=int, default=20, help="chains of the small run")
    parser.add_argument("--large", type=int, default=80, help="chains of the large run")
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in (args.tree or [HERE.parent])]
    for mode, scale in (("engine", 1), ("core", 10)):
        first: int | None = None
        for tree in trees:
            count = per_step(tree, mode, args.small * scale, args.large * scale)
            first = first or count
            print(f"{mode:6}  {count:>10,} instructions/step  {count / first:6.3f}x  {tree}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
