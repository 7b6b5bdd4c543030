"""Give freed heap memory back to the kernel after a flood of pending connections.

A pending (pre-authentication) connection costs tens of KiB of C heap: the socket
transport, OpenSSL's SSL object and its record buffers, asyncio's buffers. When a flood of
them closes, the memory is freed but glibc keeps it: the free chunks lie between live
allocations, so the heap top cannot shrink and the daemon's RSS stays at the flood's peak
(bench/abuse.py measured 48 MiB before, 112 MiB after everything had closed).
``malloc_trim(0)`` hands every free page inside the heaps back with MADV_DONTNEED; a full
garbage collection first frees the connections still caught in reference cycles. After
2000 pending connections: 50 MiB before, 157 MiB at the peak, 63 MiB after the trim.

:class:`HeapTrimmer` calls it once the number of pending connections has fallen back to
``low`` after having reached ``high``, at most once per ``interval`` seconds (it says when
to ask again if a trim is due but too soon). Where the C library has no ``malloc_trim``
(musl, macOS) it does nothing.

Authenticated sessions leave the same kind of holes when they close (bench/memory.py:
10,000 idle sessions closed, RSS stayed at its peak). A second trimmer watches their count
with ``fraction=0.5``: a trim once the count has fallen to half its peak since the last
trim (so a drain from 10,000 to 0 trims a few times, at least ``interval`` apart, the last
one after everything closed), ``settle`` seconds after the fall, when the closed
connections' transports and TLS objects are gone too. The full collection costs about
45 ms per 1000 live sessions; the server skips it in the pending trimmer while many
sessions are live (``collect_if``).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import resource
import time
from collections.abc import Callable

log = logging.getLogger("sstpd")

HIGH = 64  # pending connections that make the next fall worth a trim (one source's default cap)
LOW = 8
INTERVAL = 10.0  # seconds between two trims at most
SESSION_TRIM_HIGH = 256  # sessions that make a later fall to half of them worth a trim
SESSION_TRIM_SETTLE = 2.0  # seconds after the fall: the closed transports are gone by then


def libc_malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)`` as a callable, or None where libc has no such function."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: int(fn(0))


def collect_and_trim(collect_if: Callable[[], bool] | None = None) -> CollectAndTrim | None:
    """A full garbage collection, then ``malloc_trim(0)``: closed connections left in
    reference cycles (transport, protocol, exception tracebacks) hold their SSL objects
    and buffers until the cyclic collector's rare full pass, so trimming alone would
    miss them."""
    trim = libc_malloc_trim()
    if trim is None:
        return None

    return CollectAndTrim(trim, collect_if)


class CollectAndTrim:
    """The callable :func:`collect_and_trim` returns; remembers what the last call cost
    (milliseconds of garbage collection and of ``malloc_trim``, objects collected).

    ``collect_if`` (None: always) decides whether the full collection runs: it costs
    about 45 ms per 1000 live sessions (bench/memory.py, the daemon's log), all of it a
    stall of the event loop, so a caller may skip it when many sessions are live and
    leave the cycles to CPython's own full collections."""

    def __init__(
        self, trim: Callable[[], int], collect_if: Callable[[], bool] | None = None
    ) -> None:
        self._trim = trim
        self.collect_if = collect_if
        self.gc_ms = self.trim_ms = 0.0
        self.collected = -1  # -1: the collection was skipped

    def __call__(self) -> int:
        t0 = time.perf_counter()
        skip = self.collect_if is not None and not self.collect_if()
        self.collected = -1 if skip else gc.collect()
        t1 = time.perf_counter()
        res = self._trim()
        self.gc_ms, self.trim_ms = (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000
        return res

    def describe(self) -> str:
        if self.collected < 0:
            return f"gc skipped, malloc_trim {self.trim_ms:.0f} ms"
        gc_part = f"gc {self.gc_ms:.0f} ms ({self.collected} objects)"
        return f"{gc_part}, malloc_trim {self.trim_ms:.0f} ms"


def rss_bytes() -> int | None:
    """This process's resident set size (Linux), for the log line."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


class HeapTrimmer:
    def __init__(
        self,
        *,
        high: int = HIGH,
        low: int = LOW,
        interval: float = INTERVAL,
        fraction: float = 0.0,
        settle: float = 0.0,
        what: str = "pending connections",
        trim: Callable[[], int] | None = None,
    ) -> None:
        self.high, self.low, self.interval = high, low, interval
        self.fraction, self.settle, self.what = fraction, settle, what
        self._trim = trim
        self.armed = False
        self.peak = 0
        self.last: float | None = None
        self.due: float | None = None  # when the fall was seen plus ``settle``
        self.trims = 0

    @classmethod
    def for_this_process(
        cls,
        *,
        high: int = HIGH,
        low: int = LOW,
        fraction: float = 0.0,
        settle: float = 0.0,
        what: str = "pending connections",
        collect_if: Callable[[], bool] | None = None,
    ) -> HeapTrimmer:
        return cls(
            high=high,
            low=low,
            fraction=fraction,
            settle=settle,
            what=what,
            trim=collect_and_trim(collect_if),
        )

    def update(self, count: int, now: float) -> float | None:
        """Note the current count. Trims if it is due; returns the time to call again when
        a trim is due but must wait (``settle``, or the last one was less than
        ``interval`` ago)."""
        if self._trim is None:
            return None
        if count >= self.high:
            self.armed = True
        if self.armed:
            self.peak = max(self.peak, count)
        if not self.armed or count > max(self.low, int(self.peak * self.fraction)):
            self.due = None
            return None
        if self.due is None:
            self.due = now + self.settle
        due = self.due
        if self.last is not None:
            due = max(due, self.last + self.interval)
        if now < due:
            return due
        before = rss_bytes()
        t0 = time.perf_counter()
        self._trim()
        took = time.perf_counter() - t0
        after = rss_bytes()
        self.trims += 1
        if before is not None and after is not None:
            cost = self._trim.describe() if isinstance(self._trim, CollectAndTrim) else ""
            log.info(
                "heap trimmed after %d %s fell to %d: RSS %.1f -> %.1f MiB (%.0f ms%s)",
                self.peak,
                self.what,
                count,
                before / 2**20,
                after / 2**20,
                took * 1000,
                f": {cost}" if cost else "",
            )
        self.armed, self.peak, self.last, self.due = False, 0, now, None
        return None
