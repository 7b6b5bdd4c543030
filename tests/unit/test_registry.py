"""The supervisor's registry of ``server.workers`` without processes (sans-I/O): the
per-user limit and the failed-login throttle counted across workers, and what a dead
worker's sessions leave behind."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sstpd.proto.guard import AuthThrottle, ThrottleConfig
from sstpd.proto.registry import Registry, UserLimit, user_limit


def registry(limit: int = 0, action: str = "deny", **throttle: float) -> Registry:
    cfg = ThrottleConfig(**throttle)  # type: ignore[arg-type]
    return Registry(AuthThrottle(cfg), max_per_user=limit, action=action)


def test_user_limit_policy() -> None:
    assert user_limit("a", [1, 2], 0, "deny") == UserLimit()  # no limit
    assert user_limit("a", [1], 2, "deny") == UserLimit()
    assert user_limit("a", [1, 2], 2, "deny").refuse == "user 'a' already has 2 sessions"
    assert user_limit("a", [1, 2], 2, "replace") == UserLimit(replace=(1,))
    # a lowered limit (reload) replaces as many as needed, oldest first
    assert user_limit("a", [5, 3, 9], 1, "replace") == UserLimit(replace=(5, 3, 9))


def test_deny_counts_across_workers() -> None:
    r = registry(limit=2)
    assert r.login(0, 0, 1, "alice", "198.51.100.1") == UserLimit()
    assert r.login(1, 0, 2, "alice", "198.51.100.2") == UserLimit()
    third = r.login(0, 0, 3, "alice", "198.51.100.3")
    assert third.refuse and 3 not in r.sessions  # a refused login does not count
    assert r.login(1, 0, 4, "bob", "198.51.100.4") == UserLimit()  # another user
    assert r.count("alice") == 2
    r.closed(1)
    assert r.count("alice") == 1
    assert r.login(1, 0, 5, "alice", "198.51.100.5") == UserLimit()
    assert r.closed(99) is None  # unknown (refused, or already released): nothing


def test_replace_names_the_oldest_login_whatever_its_worker_and_id() -> None:
    r = registry(limit=1, action="replace")
    # worker 1's id 8 logged in before worker 0's id 3 ... ids are not login order
    assert r.login(1, 0, 8, "alice", "s") == UserLimit()
    got = r.login(0, 0, 3, "alice", "s")
    assert got == UserLimit(replace=(8,))
    assert r.sessions[8].worker == 1 and r.sessions[8].leaving
    assert r.count("alice") == 1  # the replaced one no longer counts ...
    nxt = r.login(1, 0, 10, "alice", "s")
    assert nxt == UserLimit(replace=(3,))  # ... and is not replaced twice


def test_reauthentication_is_counted_once() -> None:
    r = registry(limit=1)
    assert r.login(0, 0, 1, "alice", "s") == UserLimit()
    assert r.login(0, 0, 1, "alice", "s") == UserLimit()
    assert r.count("alice") == 1


def test_a_dead_worker_releases_its_sessions_only_of_that_generation() -> None:
    r = registry(limit=2)
    r.login(0, 0, 1, "alice", "s")
    r.login(1, 0, 2, "alice", "s")
    r.login(1, 1, 1_000_002, "bob", "s")  # the restarted worker 1 (generation 1)
    r.opened(2, 100.0, "boot-00000002", "10.77.0.130", (b"cls",))
    r.traffic(2, 10, 20, 1, 2)
    gone = r.worker_gone(1, 0)
    assert [h.id for h in gone] == [2]
    h = gone[0]
    assert (h.user, h.acct_session_id, h.address, h.opened) == (
        "alice", "boot-00000002", "10.77.0.130", 100.0
    )  # fmt: skip
    assert (h.rx_bytes, h.tx_bytes, h.rx_packets, h.tx_packets, h.classes) == (
        10, 20, 1, 2, (b"cls",)
    )  # fmt: skip
    assert r.count("alice") == 1 and r.count("bob") == 1
    assert r.worker_gone(1, 0) == []


def test_throttle_blocks_across_workers() -> None:
    r = registry(delay=1.0, max_delay=8.0, window=60.0, block_after=4, block_time=30.0)
    assert r.check("192.0.2.1", "alice", 0.0).delay == 1.0
    for t in range(3):  # failures seen by different workers count in one place
        res = r.failed("192.0.2.1", "alice", float(t))
        assert not res.blocked
    c = r.check("192.0.2.1", "alice", 3.0)
    assert not c.blocked and c.delay == 8.0  # the 4th failure would earn 1*2**3
    res = r.failed("192.0.2.1", "alice", 3.0)
    assert res.blocked == ("source 192.0.2.1", "user 'alice'")
    assert r.check("192.0.2.1", "bob", 4.0).blocked  # the source
    assert r.check("192.0.2.2", "ALICE", 4.0).blocked  # the user (names fold case)
    assert not r.check("192.0.2.2", "bob", 4.0).blocked
    assert not r.check("192.0.2.1", "alice", 33.1).blocked  # block_time over
    r.failed("192.0.2.3", "carol", 40.0)
    r.succeeded("192.0.2.3", "carol")
    assert r.check("192.0.2.3", "carol", 40.0).delay == 1.0  # a success clears


def test_reconfigure_keeps_counters() -> None:
    r = registry(block_after=3)
    r.failed("192.0.2.1", "x", 0.0)
    r.failed("192.0.2.1", "x", 0.0)
    r.reconfigure(ThrottleConfig(block_after=2), 1, "replace")
    assert r.max_per_user == 1 and r.action == "replace"
    assert r.failed("192.0.2.1", "x", 0.0).blocked


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1)), max_size=60))
def test_counts_never_exceed_the_limit_and_return_to_zero(ops: list[tuple[int, int]]) -> None:
    r = registry(limit=2, action="replace")
    for sid, (worker, close) in enumerate(ops, 1):
        r.login(worker, 0, sid, "u", "s")
        assert r.count("u") <= 2
        if close and r.sessions:
            r.closed(min(r.sessions))
    for w in range(3):
        r.worker_gone(w, 0)
    assert r.count("u") == 0 and not r.sessions


def test_next_delay_matches_what_failure_gives() -> None:
    t = AuthThrottle(ThrottleConfig(delay=0.5, max_delay=4.0, window=10.0, block_after=0))
    for i in range(8):
        now = float(i)
        expect = t.next_delay("s", "u", now)
        assert t.failure("s", "u", now).delay == expect
    assert t.next_delay("s", "u", 100.0) == 0.5  # the window forgot them
    assert t.next_delay("", "", 0.0) == 0.0


def test_an_address_after_an_ipv6_only_open_reaches_a_dead_workers_stop() -> None:
    r = registry()
    r.login(0, 0, 1, "alice", "s")
    r.opened(1, 100.0, "boot-00000001", "")  # IPv6 only: no address at open
    r.opened6(1, "2001:db8:77:1::/64", "0a0b0c0d0e0f0001")
    r.address(1, "10.77.0.9")  # IPCP opened later
    r.address(99, "10.77.0.10")  # unknown (already closed): nothing
    [h] = r.worker_gone(0, 0)
    assert (h.address, h.prefix6, h.opened) == ("10.77.0.9", "2001:db8:77:1::/64", 100.0)
