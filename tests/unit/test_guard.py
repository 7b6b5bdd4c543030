"""The pre-authentication budget and the brute-force throttle (sans-I/O, time passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.config import parse_config
from sstpd.errors import ConfigError
from sstpd.proto.guard import AuthThrottle, PendingBudget, ThrottleConfig


def test_budget_per_source_then_total() -> None:
    b = PendingBudget(total=3, per_source=2)
    assert b.refusal("a") is None
    b.add("a")
    b.add("a")
    assert b.refusal("a") == "limit_per_source"
    assert b.refusal("b") is None
    b.add("b")
    assert b.refusal("c") == "limit_total"
    b.remove("a")
    assert b.refusal("c") is None and b.count == 2
    b.remove("a")
    b.remove("a")  # one too many: ignored, never negative
    assert b.count == 1 and b.by_source == {"b": 1}


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abc"))))
def test_budget_counts_stay_consistent(ops: list[tuple[bool, str]]) -> None:
    b = PendingBudget(total=5, per_source=2)
    for add, src in ops:
        if add and b.refusal(src) is None:
            b.add(src)
        elif not add:
            b.remove(src)
        assert b.count == sum(b.by_source.values()) <= 5
        assert all(0 < n <= 2 for n in b.by_source.values())


def test_delay_doubles_then_caps_then_blocks_once() -> None:
    t = AuthThrottle(ThrottleConfig(delay=1, max_delay=8, window=60, block_after=6, block_time=100))
    delays = []
    blocked = []
    for i in range(6):
        f = t.failure("1.2.3.4", f"user{i}", float(i))
        delays.append(f.delay)
        blocked += f.blocked
    assert delays == [1, 2, 4, 8, 8, 8]  # per source: the user names differ
    assert blocked == ["source 1.2.3.4"]
    assert t.source_blocked("1.2.3.4", 6.0)
    assert not t.source_blocked("1.2.3.4", 106.0)  # the block ends
    assert not t.source_blocked("5.6.7.8", 6.0)
    assert t.blocks == 1


def test_user_blocked_from_many_sources_and_success_clears() -> None:
    t = AuthThrottle(ThrottleConfig(delay=0, window=60, block_after=3, block_time=100))
    for i in range(3):
        f = t.failure(f"10.0.0.{i}", "Alice", float(i))
        assert f.delay == 0
    assert f.blocked == ("user 'Alice'",)
    assert t.user_blocked("alice", 3.0)  # names compare case-insensitively
    assert t.blocked_count(3.0) == {"sources": 0, "users": 1}
    t.success("10.0.0.9", "alice")
    assert not t.user_blocked("alice", 3.0)


def test_window_forgets_old_failures() -> None:
    t = AuthThrottle(ThrottleConfig(delay=1, max_delay=8, window=10, block_after=3))
    t.failure("s", "u", 0.0)
    t.failure("s", "u", 1.0)
    f = t.failure("s", "u", 20.0)  # the first two are out of the window
    assert f.delay == 1 and not f.blocked
    t.expire(100.0)
    assert not t._sources and not t._users


def test_block_after_zero_never_blocks() -> None:
    t = AuthThrottle(ThrottleConfig(block_after=0))
    for i in range(100):
        assert not t.failure("s", "u", float(i)).blocked
    assert not t.source_blocked("s", 100.0)


def test_key_table_is_bounded() -> None:
    t = AuthThrottle(ThrottleConfig(block_after=0, window=1))
    t.MAX_KEYS = 50  # type: ignore[misc]
    for i in range(500):
        t.failure(f"10.0.{i // 256}.{i % 256}", f"u{i}", float(i))
    assert len(t._sources) <= 50 and len(t._users) <= 50


def test_config_keys_and_errors() -> None:
    c = parse_config(
        "[limits]\npending_total = 10\npending_per_source = 2\nsetup_timeout = 3\n"
        "auth_fail_delay = 0\nauth_fail_block_after = 0\n"
        '[auth]\nmax_sessions_per_user = 1\nsession_limit_action = "replace"\n'
    )
    assert (c.limits.pending_total, c.limits.pending_per_source) == (10, 2)
    assert c.limits.setup_timeout == 3.0 and c.limits.auth_fail_delay == 0
    assert c.auth.max_sessions_per_user == 1 and c.auth.session_limit_action == "replace"
    defaults = parse_config("")
    assert defaults.limits.pending_total == 1000 and defaults.limits.setup_timeout == 10.0
    for text, where in (
        (
            "[limits]\npending_total = 4\npending_per_source = 5\n",
            "x.toml:3: limits.pending_per_source",
        ),
        ("[limits]\nsetup_timeout = 0\n", "x.toml:2: limits.setup_timeout"),
        (
            "[limits]\nauth_fail_delay = 4\nauth_fail_max_delay = 2\n",
            "x.toml:3: limits.auth_fail_max_delay",
        ),
        ('[auth]\nsession_limit_action = "kick"\n', "x.toml:2: auth.session_limit_action"),
        ("[limits]\npending_totl = 4\n", "x.toml:2: limits.pending_totl"),
    ):
        with pytest.raises(ConfigError) as e:
            parse_config(text, "x.toml")
        assert str(e.value).startswith(where), str(e.value)
