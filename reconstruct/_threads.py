"""How many torch threads a CPU job should use: the cores that are free now, not all of them.

Measured for the head avatar (BENCHMARKS.md, issue 15): with one of two cores busy, two torch
threads made training 7x and rendering 12x slower than on an idle machine, far worse than one
thread on the free core, because every parallel region waits for the thread that shares the busy
core. :func:`choose_threads` therefore counts the cores that were idle over a short window
(``/proc/stat``, Linux) among those this process may run on, and uses that many (at least one).
Elsewhere, or when ``/proc/stat`` cannot be read, it uses every usable core (torch's default).
"""

from __future__ import annotations

import os
import time


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> dict[int, tuple[int, int]] | None:
    """Per core: (idle + iowait jiffies, total jiffies), or None when /proc/stat is unreadable."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = {}
    for ln in lines:
        if ln.startswith("cpu") and ln[3:4].isdigit():
            name, *vals = ln.split()
            v = [int(x) for x in vals[:8]]
            out[int(name[3:])] = (v[3] + v[4], sum(v))
    return out or None


def idle_cores(interval: float = 0.25) -> float | None:
    """Idle cores (a float: 1.6 = one idle core and most of another) among the usable ones over
    ``interval`` seconds, or None when it cannot be measured."""
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(interval)
    b = _cpu_times()
    if b is None:
        return None
    try:
        mine = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        mine = set(a)
    idle = 0.0
    for c in mine:
        if c in a and c in b:
            dt = b[c][1] - a[c][1]
            idle += (b[c][0] - a[c][0]) / dt if dt > 0 else 1.0
    return idle


def choose_threads(requested: int | None = None) -> int:
    """``requested`` when given; else the idle cores rounded to the nearest whole core (>= 1, <=
    the usable cores)."""
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return int(requested)
    n = usable_cores()
    idle = idle_cores()
    if idle is None:
        return n
    return max(1, min(n, int(idle + 0.5)))
