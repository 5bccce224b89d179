"""Fit our thread count to the CPU time other processes leave us.

Why: torch's OpenMP pool (which our kernels share) parks idle threads by spinning at every barrier.
When another process holds one of the cores, one of our threads waits for a core while its partner
spins away the time slice our process would otherwise give it: on 2 cores beside one busy process,
Gaussian training fell from 6.2 to 0.5 steps/s, below the 3.7 of a single thread. Each tick reads
how busy the CPUs were (/proc/stat) minus our own CPU time, and gives torch one thread fewer per
core that others kept busy (never fewer than 1, never more than at the start); idle cores give
the threads back.

`tick()` must run on the thread that launches the work: OpenMP's thread count is per calling
thread, so a background watcher could not change it. The training loop and every progress loop
tick; the reading happens at most once per `PERIOD` seconds, so ticking is cheap.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time

log = logging.getLogger("lumen3d")

PERIOD = 0.5  # seconds between readings (a decision within about a second of a change)
BUSY_MORE = 0.6  # others keep this much of a core busy: give it up
BUSY_LESS = 0.3  # others leave this much headroom under what we gave up: take a core back


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks of `cpus` since boot, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        if not line.startswith("cpu") or line[3:4] == " ":
            continue
        name, *vals = line.split()
        if int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in vals[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(v)
        busy += sum(v) - v[3] - v[4]  # steal counts as busy: the hypervisor gave the core to others
    return (busy, total) if total else None


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Governor:
    """Adapts torch's thread count to the CPU left by other processes (see the module docstring)."""

    def __init__(self, max_threads: int | None = None):
        import torch

        self.torch = torch
        self.max_threads = max_threads or torch.get_num_threads()
        self.threads = self.max_threads
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.enabled = self.max_threads > 1 and os.environ.get("LUMEN3D_THREADS", "auto") == "auto"
        self.last = None
        self.others = 0.0  # cores other processes kept busy in the last period

    def _read(self):
        ticks = _cpu_ticks(self.cpus)
        return None if ticks is None else (time.monotonic(), ticks, _own_seconds())

    def tick(self) -> int:
        """Take a reading when one is due and set torch's thread count from it; returns the count."""
        if not self.enabled:
            return self.threads
        now = time.monotonic()
        if self.last is not None and now - self.last[0] < PERIOD:
            return self.threads
        cur = self._read()
        if cur is None:
            self.enabled = False
            return self.threads
        prev, self.last = self.last, cur
        if prev is None:
            return self.threads
        wall = cur[0] - prev[0]
        busy = (cur[1][0] - prev[1][0]) / self.hz
        self.others = max(0.0, (busy - (cur[2] - prev[2])) / wall)
        self.decide(self.others)
        return self.threads

    def decide(self, others: float) -> None:
        """Threads for `others` cores kept busy by other processes. A core is given up when others
        use more than BUSY_MORE of one beyond the cores we leave them, and taken back when they
        would still leave it BUSY_LESS short of that; the gap keeps the count from flapping."""
        n = len(self.cpus)
        want = self.threads
        if others > n - self.threads + BUSY_MORE:
            want = n - math.ceil(others - BUSY_MORE)
        elif others < n - self.threads - 1 + BUSY_LESS:
            want = self.threads + 1
        want = max(1, min(self.max_threads, want))
        if want != self.threads:
            log.info("threads %d → %d: other processes keep %.1f of %d cores busy", self.threads, want, others, n)
            self.threads = want
            self.torch.set_num_threads(want)


_governor: Governor | None = None


def governor() -> Governor:
    global _governor
    if _governor is None:
        _governor = Governor()
    return _governor


def tick() -> int:
    """The process's governor's tick (see :class:`Governor`); nothing before torch is loaded."""
    if _governor is None and "torch" not in sys.modules:
        return 0
    return governor().tick()


def set_threads(n: int) -> None:
    """Give torch `n` threads and make `n` the governor's ceiling: a process's share of the cores
    when several train on one machine (`--threads`)."""
    import torch

    torch.set_num_threads(n)
    gov = governor()
    gov.max_threads = gov.threads = n
    gov.enabled = n > 1 and os.environ.get("LUMEN3D_THREADS", "auto") == "auto"
