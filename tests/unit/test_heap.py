"""HeapTrimmer (sstpd.aio.heap): when malloc_trim runs after a flood of pending connections.
The effect on a real daemon's RSS is tests/integration/test_limits.py's flood test."""

from __future__ import annotations

import platform

import pytest

from sstpd.aio.heap import HeapTrimmer, libc_malloc_trim


def trimmer() -> tuple[HeapTrimmer, list[int]]:
    calls: list[int] = []
    return HeapTrimmer(high=64, low=8, interval=10.0, trim=lambda: calls.append(1) or 1), calls


def test_trims_once_the_count_falls_back_after_a_flood() -> None:
    t, calls = trimmer()
    for n in range(0, 9):
        assert t.update(n, 1.0) is None  # normal traffic: never high, never trimmed
    assert calls == []
    for n in (20, 64, 100, 50, 9):
        t.update(n, 2.0)
    assert calls == []  # still above the low-water mark
    t.update(8, 3.0)
    assert calls == [1] and not t.armed
    t.update(0, 3.5)
    assert calls == [1]  # once per flood, not at every release


def test_rate_limited_and_says_when_to_come_back() -> None:
    t, calls = trimmer()
    t.update(64, 0.0)
    t.update(0, 1.0)
    assert calls == [1]
    t.update(70, 2.0)
    assert t.update(3, 5.0) == 11.0  # due, but the last trim was 4 s ago
    assert calls == [1]
    t.update(80, 7.0)  # a new wave before the retry: still armed
    assert t.update(90, 11.0) is None and calls == [1]  # high at the retry: wait for the fall
    assert t.update(2, 12.0) is None and calls == [1, 1]


def test_without_malloc_trim_nothing_happens() -> None:
    t = HeapTrimmer(trim=None)
    assert t.update(1000, 0.0) is None and t.update(0, 100.0) is None and t.trims == 0


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_glibc_malloc_trim_is_found_and_callable() -> None:
    fn = libc_malloc_trim()
    assert fn is not None
    assert fn() in (0, 1)
    t = HeapTrimmer.for_this_process()
    t.update(100, 0.0)
    t.update(0, 1.0)
    assert t.trims == 1


def session_trimmer() -> tuple[HeapTrimmer, list[int]]:
    calls: list[int] = []
    t = HeapTrimmer(
        high=256,
        low=8,
        interval=10.0,
        fraction=0.5,
        settle=2.0,
        what="sessions",
        trim=lambda: calls.append(1) or 1,
    )
    return t, calls


def test_sessions_trim_when_half_closed_after_they_settled() -> None:
    t, calls = session_trimmer()
    for n in range(1, 10001, 500):
        assert t.update(n, 0.0) is None  # sessions opening: nothing to give back
    assert t.update(10000, 0.0) is None and t.peak == 10000
    assert t.update(5001, 1.0) is None  # not half yet
    assert t.update(5000, 1.0) == 3.0  # half: trim once the closed ones are gone
    assert t.update(4000, 2.0) == 3.0 and calls == []
    assert t.update(3000, 3.0) is None and calls == [1]
    # the rest keep closing: the count seen after the trim is the new peak; the next
    # trim at half of it, at least 10 s after the last
    assert t.update(2000, 4.0) is None and t.peak == 2000
    assert t.update(1001, 5.0) is None
    assert t.update(1000, 5.0) == 13.0
    assert t.update(0, 12.0) == 13.0 and calls == [1]
    assert t.update(0, 13.0) is None and calls == [1, 1]
    assert t.update(0, 100.0) is None and calls == [1, 1]  # nothing new to give back


def test_sessions_coming_back_cancel_a_pending_trim() -> None:
    t, calls = session_trimmer()
    t.update(1000, 0.0)
    assert t.update(400, 1.0) == 3.0
    assert t.update(900, 2.0) is None  # they reconnected before the trim was due
    assert t.update(900, 5.0) is None and calls == []
    assert t.update(450, 6.0) == 8.0
    assert t.update(450, 8.0) is None and calls == [1]


def test_few_sessions_never_trim() -> None:
    t, calls = session_trimmer()
    for now, n in enumerate([10, 200, 255, 3, 0, 255, 0]):
        assert t.update(n, float(now)) is None
    assert calls == []


def test_the_full_collection_can_be_skipped_and_the_trim_still_runs() -> None:
    import gc

    from sstpd.aio.heap import CollectAndTrim

    trims: list[int] = []
    live = {"sessions": 5000}
    run = CollectAndTrim(lambda: trims.append(1) or 1, lambda: live["sessions"] < 256)
    collections: list[str] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            collections.append(phase)

    gc.callbacks.append(note)
    try:
        run()
        assert collections == [] and trims == [1] and run.collected == -1
        assert "gc skipped" in run.describe()
        live["sessions"] = 10
        run()
        assert collections == ["start"] and trims == [1, 1] and run.collected >= 0
    finally:
        gc.callbacks.remove(note)
