"""Peak resident memory of this process, as the kernel counts it for its own address space."""

from __future__ import annotations

from pathlib import Path


def peak_rss_mib() -> float:
    """``VmHWM`` of ``/proc/self/status`` in MiB.

    Not ``getrusage().ru_maxrss``: Linux carries that across ``exec``, so a subprocess started
    by a big pytest process reports the parent's peak until it exceeds it.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_mib() -> float:
    """``VmRSS`` of ``/proc/self/status`` in MiB: resident now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmRSS in /proc/self/status")
