"""Map-reduce planning, pure: partitions -> map tasks -> partial reduces -> one final reduce.

Given the list ``partition()`` returned, ``plan_map_reduce`` returns the child specs of the
node, in an order where every spec's ``depends_on`` names earlier specs:

* ``map-<i>``: a contiguous group of partitions (``items``), at most ``partitions`` groups,
  sizes differing by at most one, so results keep the partition order;
* ``combine-<j>``: a partial reduce over a contiguous slice of the map tasks, when
  ``reduce_parallelism`` > 1 (``min(reduce_parallelism, maps)`` of them);
* ``reduce``: the final reduce over every partial (or every map task when there is no partial
  layer). It always exists, so an empty partition list reduces ``[]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FINAL = "reduce"


def split_evenly(count: int, groups: int) -> list[range]:
    """``range(count)`` cut into ``min(groups, count)`` contiguous slices of near-equal size."""
    groups = max(1, min(groups, count))
    size, extra = divmod(count, groups)
    slices: list[range] = []
    start = 0
    for index in range(groups):
        end = start + size + (1 if index < extra else 0)
        if end > start:
            slices.append(range(start, end))
        start = end
    return slices


def plan_map_reduce(
    items: Sequence[Any], partitions: int | None, reduce_parallelism: int
) -> list[dict[str, Any]]:
    """The child specs for ``items`` (see the module docstring)."""
    groups = split_evenly(len(items), partitions or len(items) or 1)
    width = len(str(max(len(groups) - 1, 0)))
    maps = [
        {
            "id": f"map-{i:0{width}d}",
            "role": "map",
            "first": g.start,
            "items": [items[k] for k in g],
        }
        for i, g in enumerate(groups)
    ]
    specs: list[dict[str, Any]] = list(maps)
    finals_inputs = [m["id"] for m in maps]
    if reduce_parallelism > 1 and len(maps) > 1:
        slices = split_evenly(len(maps), reduce_parallelism)
        cwidth = len(str(len(slices) - 1))
        partials = [
            {
                "id": f"combine-{j:0{cwidth}d}",
                "role": "combine",
                "depends_on": [maps[k]["id"] for k in s],
            }
            for j, s in enumerate(slices)
        ]
        specs.extend(partials)
        finals_inputs = [p["id"] for p in partials]
    specs.append({"id": FINAL, "role": "reduce", "depends_on": finals_inputs})
    return specs
