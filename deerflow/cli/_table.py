"""Tables that fit the terminal: one line per row, long cells cut with an ellipsis.

Rich shrinks a table that is too wide by dropping or wrapping columns, which makes a list of
runs unreadable in an 80-column terminal. Here each column says how far it may shrink and in
which order; the widths are computed once, and every cell stays on one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

_GAP = 2  # spaces between two columns


@dataclass(frozen=True)
class Column:
    """A column: its header, the narrowest it may get, and when it gives up width."""

    name: str
    #: never narrower than this (a run id cut to 12 characters still names it uniquely)
    min_width: int
    #: columns with a lower rank give up width first (down to ``min_width``)
    shrink_rank: int = 0
    justify: str = "left"


def fitted_table(
    columns: Sequence[Column], rows: Sequence[Sequence[RenderableType]], width: int
) -> Table:
    """A borderless table of ``rows`` no wider than ``width``."""
    natural = [
        max([len(c.name), *(Text(str(r[i])).cell_len for r in rows)]) for i, c in enumerate(columns)
    ]
    widths = list(natural)
    excess = sum(widths) + _GAP * (len(widths) - 1) - width
    for i in sorted(range(len(columns)), key=lambda i: columns[i].shrink_rank):
        if excess <= 0:
            break
        give = min(excess, max(0, widths[i] - columns[i].min_width))
        widths[i] -= give
        excess -= give
    table = Table(box=None, pad_edge=False, padding=(0, _GAP // 2), show_edge=False)
    for column, w in zip(columns, widths, strict=True):
        table.add_column(
            column.name,
            width=w,
            no_wrap=True,
            overflow="ellipsis",
            justify=column.justify,  # type: ignore[arg-type]
        )
    for row in rows:
        table.add_row(*row)
    return table
