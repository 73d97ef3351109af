"""Give the C allocator's free memory back to the system once a burst of work is over.

A burst (thousands of runs started at once, a partition loaded, a backlog folded) allocates
batches of decoded records, produce and fetch buffers, and the fold and decide of many runs at
once; most of it is freed when the burst ends. glibc's ``malloc`` keeps what was freed in its
heaps for later allocations instead of returning it: measured on one engine with 10,000 runs
left waiting, 43 MB (SQLite) and 131 MB (Kafka: the clients' buffers) stayed resident that
nothing held, about 4 and 13 kB per waiting run. ``malloc_trim(0)`` returns the free pages of
every heap (a few ms to 20 ms for those sizes, in a thread here). CPython's own small-object
arenas are not affected: they hold the objects still alive.

:class:`Trimmer` trims once the process retains :data:`TRIM_GROWTH` bytes more than after
the last trim (:func:`retained_bytes`: the allocator's free bytes plus the RSS) and the loop
that asks has been quiet for :data:`TRIM_QUIET` seconds (the burst is over, and what the process's
other loops did with it too). It looks at most every :data:`TRIM_INTERVAL` seconds: a steady
load never pays for it, a process that goes idle after a burst once, an idle one a look.
(Memory freed, not work done: what anything in the process freed is given back.) Where
``malloc_trim`` does not exist (musl, macOS, Windows), nothing happens.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from collections.abc import Callable

__all__ = [
    "TRIM_GROWTH",
    "TRIM_INTERVAL",
    "TRIM_QUIET",
    "Trimmer",
    "malloc_trim",
    "retained_bytes",
    "rss_bytes",
]

TRIM_GROWTH = 8 << 20  # bytes freed (or RSS grown) since the last trim before the next one
TRIM_INTERVAL = 10.0  # seconds between two trims, at least
TRIM_QUIET = 2.0  # seconds without work before a trim


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _find_mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        info = ctypes.CDLL(None).mallinfo2  # glibc 2.33 and later
    except (OSError, AttributeError):
        return None
    info.argtypes = []
    info.restype = _MallInfo2
    return info


_MALLOC_TRIM = _find_malloc_trim()
_MALLINFO2 = _find_mallinfo2()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def retained_bytes() -> int:
    """What the process holds that may be given back: the allocator's free bytes (its free
    chunks, ``mallinfo2``'s ``fordblks``) plus the RSS, or the RSS alone without
    ``mallinfo2``. Either grows when memory is freed or taken; a trim lowers the RSS only."""
    free = 0 if _MALLINFO2 is None else int(_MALLINFO2().fordblks)
    return free + rss_bytes()


def rss_bytes() -> int:
    """This process's resident set size now (0 where ``/proc`` cannot tell)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def malloc_trim() -> bool:
    """Return the C allocator's free memory to the system now; whether there was a way to.

    ctypes releases the GIL for the call: other threads run meanwhile.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class Trimmer:
    """Trims once enough work was done and the loop is quiet (see the module docstring).

    Args:
        growth: bytes retained (:func:`retained_bytes`) more than after the last trim before
            the next one is due.
        interval: seconds between two trims, at least.
        quiet_for: seconds without work before a trim.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        growth: int = TRIM_GROWTH,
        interval: float = TRIM_INTERVAL,
        quiet_for: float = TRIM_QUIET,
        clock: Callable[[], float] = time.monotonic,
        retained: Callable[[], int] = retained_bytes,
    ) -> None:
        self.growth = growth
        self.interval = interval
        self.quiet_for = quiet_for
        self._clock = clock
        self._retained = retained
        self._last = self._busy = clock()
        self._base = retained()  # what was retained after the last trim
        #: whether to trim at all
        self.enabled = _MALLOC_TRIM is not None
        #: how many trims were made
        self.trims = 0

    def worked(self, units: int) -> None:
        """``units`` of work were done (records folded, runs evicted, ...): not quiet."""
        if units:
            self._busy = self._clock()

    def due(self) -> bool:
        """Whether the loop has been quiet long enough, and enough was freed since the last
        trim, for a trim now. Looks at most every ``interval`` seconds."""
        now = self._clock()
        if (
            not self.enabled
            or now - self._busy < self.quiet_for
            or now - self._last < self.interval
        ):
            return False
        self._last = now  # one look per interval, trimming or not
        return self._retained() - self._base >= self.growth

    async def quiet(self) -> None:
        """The loop found nothing to do this round: trim (in a thread) if one is due."""
        if not self.due():
            return
        await asyncio.to_thread(malloc_trim)
        self._last = self._clock()
        self._base = self._retained()
        self.trims += 1
