"""A run's DAG laid out by topological layers and drawn as SVG, server-side (no JavaScript).

Each top-level task is a box coloured by its status, in the column of its depth (one more than
its deepest dependency). An expanding node (dynamic tasks, fan-out, map-reduce: children
``node/child``) shows its children as a grid of small squares, or, past
:data:`MAX_CHILD_CELLS`, as one bar split by status. A sub-workflow node links to its child
runs. Without the workflow definition (``deerflow ui`` with no ``--app``) dependencies are
unknown: tasks are placed by when they were first scheduled and no edges are drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from deerflow.core import WorkflowDef as Workflow
from deerflow.core.expand import node_of
from deerflow.runtime import RunResult

MAX_CHILD_CELLS = 240
NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 190, 46, 60, 22, 16
CELL, CELLS_PER_ROW = 12, 13
STATUS_ORDER = ("completed", "running", "retrying", "pending", "skipped", "failed")


@dataclass
class GraphNode:
    """One top-level task and where it is drawn."""

    id: str
    status: str
    attempts: int
    layer: int = 0
    kind: str = "task"
    children: list[tuple[str, str]] = field(default_factory=list)
    child_runs: list[str] = field(default_factory=list)
    x: int = 0
    y: int = 0
    h: int = NODE_H
    #: what the node's kind calls it ("map-reduce", "sub-workflow"), when the definition is known
    label: str | None = None
    #: a waiting node: what it waits for, and until when at most (epoch seconds)
    waits_for: str | None = None
    deadline: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The node as the API returns it."""
        counts: dict[str, int] = {}
        for _, status in self.children:
            counts[status] = counts.get(status, 0) + 1
        return {
            "id": self.id,
            "status": self.status,
            "attempts": self.attempts,
            "layer": self.layer,
            "kind": self.kind,
            "label": self.label or self.kind,
            "children": len(self.children),
            "children_by_status": counts,
            "child_runs": self.child_runs,
            "waits_for": self.waits_for,
            "deadline": self.deadline,
            "x": self.x,
            "y": self.y,
            "width": NODE_W,
            "height": self.h,
        }


@dataclass
class Graph:
    """The laid-out DAG of one run."""

    nodes: list[GraphNode]
    edges: list[tuple[str, str]]
    dependencies_known: bool
    width: int = 0
    height: int = 0

    def as_json(self) -> dict[str, Any]:
        """The graph as the API returns it."""
        return {
            "nodes": [n.as_json() for n in self.nodes],
            "edges": [{"from": a, "to": b} for a, b in self.edges],
            "dependencies_known": self.dependencies_known,
            "width": self.width,
            "height": self.height,
        }


def _dependencies(
    wf: Workflow | None, shape: Mapping[str, Sequence[str]] | None
) -> Mapping[str, Sequence[str]] | None:
    """Each task's dependencies, in definition order: from the loaded definition, else from
    the shape the run recorded when it started; ``None`` when neither is known."""
    if wf is not None:
        return {tid: wf.get(tid).depends_on for tid in wf.order}
    return shape


def _layers(
    tasks: list[str],
    dependencies: Mapping[str, Sequence[str]] | None,
    first_scheduled: Mapping[str, float],
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    if dependencies is not None:
        layer: dict[str, int] = {}
        edges: list[tuple[str, str]] = []
        for tid, depends_on in dependencies.items():
            deps = [d for d in depends_on if d in layer]
            layer[tid] = 1 + max((layer[d] for d in deps), default=-1)
            edges.extend((d, tid) for d in deps)
        last = max(layer.values(), default=-1) + 1
        return {t: layer.get(t, last) for t in tasks}, edges
    # No definition: tasks decided in the same step share a timestamp, hence a column.
    moments = sorted({round(first_scheduled[t], 3) for t in tasks if t in first_scheduled})
    column = {m: i for i, m in enumerate(moments)}
    unscheduled = len(moments)
    return {
        t: column[round(first_scheduled[t], 3)] if t in first_scheduled else unscheduled
        for t in tasks
    }, []


def build(
    result: RunResult,
    wf: Workflow | None,
    child_runs: Mapping[str, list[str]],
    first_scheduled: Mapping[str, float],
    shape: Mapping[str, Sequence[str]] | None = None,
    waits: Mapping[str, Mapping[str, Any]] | None = None,
) -> Graph:
    """Lay out ``result``'s tasks by their dependencies (``wf``'s, else the recorded
    ``shape``); ``first_scheduled`` places them when neither is known. ``waits``: what
    waiting nodes wait for (``{"for": ..., "deadline": ...}`` by task id)."""
    top = [tid for tid in result.tasks if node_of(tid) is None]
    children: dict[str, list[tuple[str, str]]] = {}
    for tid, task in result.tasks.items():
        node = node_of(tid)
        if node is not None:
            children.setdefault(node, []).append((tid, task.status))
    dependencies = _dependencies(wf, shape)
    layers, edges = _layers(top, dependencies, first_scheduled)
    nodes = []
    for tid in top:
        task = result.tasks[tid]
        # A kind that names its drawing wins; else what the run shows decides.
        node_kind = wf.get(tid).kind if wf is not None and tid in wf.tasks else None
        drawn = node_kind.css_class if node_kind is not None else None
        kind = drawn or ("expanded" if tid in children else "task")
        if tid in child_runs:
            kind = "subworkflow"
        nodes.append(
            GraphNode(
                tid,
                task.status,
                task.attempts,
                layers[tid],
                kind,
                children.get(tid, []),
                list(child_runs.get(tid, [])),
                label=node_kind.label if node_kind is not None else None,
                waits_for=(waits or {}).get(tid, {}).get("for"),
                deadline=(waits or {}).get(tid, {}).get("deadline"),
            )
        )
    graph = Graph(nodes, edges, dependencies is not None)
    _place(graph)
    return graph


def _height(node: GraphNode) -> int:
    extra = 0
    if node.children:
        rows = math.ceil(len(node.children) / CELLS_PER_ROW)
        extra = 18 if len(node.children) > MAX_CHILD_CELLS else rows * (CELL + 2) + 4
    return NODE_H + extra + 14 * len(node.child_runs[:3])


def _place(graph: Graph) -> None:
    heights: dict[int, int] = {}
    for node in graph.nodes:
        node.h = _height(node)
        node.x = MARGIN + node.layer * (NODE_W + GAP_X)
        node.y = MARGIN + heights.get(node.layer, 0)
        heights[node.layer] = heights.get(node.layer, 0) + node.h + GAP_Y
    graph.width = max((n.x + NODE_W for n in graph.nodes), default=0) + MARGIN
    graph.height = max(heights.values(), default=0) + MARGIN


def _children_svg(node: GraphNode) -> list[str]:
    top = node.y + NODE_H - 4
    if len(node.children) > MAX_CHILD_CELLS:
        parts, x = [], node.x + 8
        total = len(node.children)
        for status in STATUS_ORDER:
            n = sum(1 for _, s in node.children if s == status)
            if n:
                w = max(1, round((NODE_W - 16) * n / total))
                parts.append(
                    f'<rect class="bar st-{status}" x="{x}" y="{top}" width="{w}" '
                    f'height="12"><title>{n} {status}</title></rect>'
                )
                x += w
        return parts
    cells = []
    for i, (cid, status) in enumerate(node.children):
        cx = node.x + 8 + (i % CELLS_PER_ROW) * (CELL + 2)
        cy = top + (i // CELLS_PER_ROW) * (CELL + 2)
        cells.append(
            f'<rect class="child st-{escape(status)}" data-task="{escape(cid)}" '
            f'x="{cx}" y="{cy}" width="{CELL}" height="{CELL}" rx="2">'
            f"<title>{escape(cid)}: {escape(status)}</title></rect>"
        )
    return cells


def _node_svg(node: GraphNode, link_prefix: str) -> str:
    nid, status = escape(node.id), escape(node.status)
    # Cut before escaping: an entity cut in half would show as text.
    label = escape(node.id if len(node.id) <= 24 else node.id[:23] + "…")
    sub = f"{status} · {node.attempts} attempt{'s' if node.attempts != 1 else ''}"
    if node.children:
        sub += f" · {len(node.children)} children"
    if node.waits_for is not None and node.deadline is not None:
        sub = f"{status} · until {_short_utc(node.deadline)}"
    title = node.label or node.kind
    if node.waits_for is not None:
        until = "" if node.deadline is None else f" until {utc(node.deadline)}"
        title += f": waits for {node.waits_for}{until}"
    parts = [
        f'<g class="node st-{status} kind-{escape(node.kind)}" data-task="{nid}" '
        f'data-status="{status}"><title>{escape(title)}</title>',
        f'<a href="#task-{nid}"><rect x="{node.x}" y="{node.y}" width="{NODE_W}" '
        f'height="{node.h}" rx="6"/>',
        f'<text x="{node.x + 8}" y="{node.y + 18}" class="label">{label}</text>',
        f'<text x="{node.x + 8}" y="{node.y + 34}" class="sub">{sub}</text></a>',
    ]
    parts.extend(_children_svg(node))
    base = node.y + node.h - 14 * len(node.child_runs[:3]) + 8
    for i, rid in enumerate(node.child_runs[:3]):
        parts.append(
            f'<a class="child-run" href="{link_prefix}/runs/{escape(rid)}">'
            f'<text x="{node.x + 8}" y="{base + 14 * i}" class="sub">↳ child run '
            f"{escape(rid[-18:])}</text></a>"
        )
    parts.append("</g>")
    return "".join(parts)


def _short_utc(epoch: float) -> str:
    """``17:01:33`` for a time of today (UTC), ``12-14 17:01`` for another day: a node is
    narrow, and a deadline a week away must not read as today's."""
    moment = datetime.fromtimestamp(epoch, UTC)
    if moment.date() == datetime.now(UTC).date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%m-%d %H:%M")


def utc(epoch: float) -> str:
    """``epoch`` as a UTC wall-clock time."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def svg(graph: Graph, link_prefix: str = "/ui") -> str:
    """The graph as an inline ``<svg>`` element (styled by the dashboard's CSS)."""
    by_id = {n.id: n for n in graph.nodes}
    edges = []
    for a, b in graph.edges:
        src, dst = by_id.get(a), by_id.get(b)
        if src is None or dst is None:
            continue
        x1, y1 = src.x + NODE_W, src.y + NODE_H // 2
        x2, y2 = dst.x, dst.y + NODE_H // 2
        mid = (x1 + x2) // 2
        edges.append(
            f'<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 4},{y2}" '
            'marker-end="url(#arrow)"/>'
        )
    nodes = "".join(_node_svg(n, link_prefix) for n in graph.nodes)
    return (
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{graph.width}" '
        f'height="{graph.height}" viewBox="0 0 {graph.width} {graph.height}" role="img" '
        'aria-label="task graph"><defs><marker id="arrow" viewBox="0 0 8 8" refX="7" '
        'refY="4" markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0 L8,4 L0,8 z"'
        f' class="arrowhead"/></marker></defs>{"".join(edges)}{nodes}</svg>'
    )
