"""Shared measuring helpers for the benchmark scripts (CPU from /proc, load, memory).

Every figure a benchmark prints comes with the machine's load, because this machine is
shared: ``machine_busy`` samples /proc/stat (busy cores over an interval), ``wait_quiet``
holds a measurement back until the machine is quiet or a timeout passes and says which.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (forked workers included)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu(root: int) -> float:
    """CPU-seconds (user + system) of ``root``'s process tree, including the exited and
    reaped children each one accounts for (cutime + cstime)."""
    total = 0
    for pid in process_tree(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / TICK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _busy_jiffies() -> tuple[int, int]:
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return sum(parts[:8]) - idle, sum(parts[:8])


class BusyMeter:
    """Busy cores of the whole machine between ``start()`` and ``stop()``."""

    def start(self) -> None:
        self.b0, self.t0 = _busy_jiffies(), time.monotonic()

    def stop(self) -> float:
        b1 = _busy_jiffies()
        return (b1[0] - self.b0[0]) / TICK / max(time.monotonic() - self.t0, 1e-6)


def machine_busy(interval: float = 1.0) -> float:
    m = BusyMeter()
    m.start()
    time.sleep(interval)
    return m.stop()


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _all_cpu() -> dict[int, tuple[str, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            f = text.rsplit(")", 1)[1].split()
            out[int(entry)] = (name, int(f[11]) + int(f[12]))
    return out


def top_processes(interval: float = 1.0, n: int = 3) -> str:
    """The ``n`` processes that used most CPU over ``interval``: "name(pid) 0.93, ..."."""
    a = _all_cpu()
    time.sleep(interval)
    b = _all_cpu()
    use = sorted(((b[p][1] - a[p][1], b[p][0], p) for p in b if p in a), reverse=True)[:n]
    return ", ".join(f"{name}({pid}) {t / TICK / interval:.2f}" for t, name, pid in use if t)


def wait_quiet(max_busy: float, timeout: float) -> tuple[float, bool]:
    """Wait until the machine (our processes being idle) uses less than ``max_busy`` cores
    over one second, for at most ``timeout`` seconds. Returns (busy cores, quiet?); when it
    times out, prints which processes keep it busy."""
    deadline = time.monotonic() + timeout
    while True:
        busy = machine_busy()
        if busy < max_busy:
            return busy, True
        if time.monotonic() >= deadline:
            print(f"  (not quiet: {busy:.2f} cores busy; top: {top_processes()})", flush=True)
            return busy, False


def raise_nofile(n: int) -> int:
    """Raise RLIMIT_NOFILE to ``n`` for this process and those it starts afterwards (the
    daemon, the clients: each needs its own sessions' worth). Beyond the hard limit only
    a privileged process can go; otherwise stop at the hard limit and say so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))
        return n
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(f"RLIMIT_NOFILE: wanted {n}, the hard limit allows {hard}")
        return hard


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
