"""server.workers = 2: the limits that span sessions hold across the workers (issue 15).

``auth.max_sessions_per_user`` and the failed-login throttle are counted by the
supervisor's registry (``sstpd.proto.registry``), so sessions and attempts landing on
different workers count together; a worker killed with SIGKILL has its sessions
released, an Accounting-Stop sent to FreeRADIUS for each (with the traffic of the last
Interim-Update or of the supervisor's 10 s refresh), and its counters kept in the
merged ``stats``.

Which worker took a connection: the ``worker`` field of ``sessions``, or from a log
line's session id (worker i numbers i+1, i+1+2, ...).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sstpd import control
from sstpd.aio.refresh import REFRESH_INTERVAL
from tests.integration.freeradius import SECRET, FreeRadius, serving
from tests.integration.netns import SERVER_IP, Daemon, Netns, namespaces
from tests.integration.test_limits import connect, finish, hostile
from tests.integration.test_workers import Pool, sessions, sock, wait_for, worker_pids

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

ATTACKER = "10.231.100.3"
BLOCK_AFTER = 4
CONFIG = f"""
[limits]
auth_fail_delay = 0.2
auth_fail_max_delay = 0.4
auth_fail_window = 120.0
auth_fail_block_after = {BLOCK_AFTER}
auth_fail_block_time = 120.0

[radius]
nas_identifier = "sstpd-workers"
timeout = 1.0
retries = 1
interim_interval = 2

[[radius.accounting_server]]
address = "{SERVER_IP}"
secret = "{SECRET}"
"""
LIMIT = '[auth]\nusers_file = "users"\n'


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpwl") as n:
        n.run(n.cli, "ip", "addr", "add", f"{ATTACKER}/24", "dev", "sti-c")
        yield n


@pytest.fixture(scope="module")
def freeradius(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeRadius]:
    with serving(FreeRadius(tmp_path_factory.mktemp("raddb-w"), SERVER_IP), net, net.srv) as fr:
        yield fr


def set_limit(d: Daemon, limit: int, action: str) -> None:
    text = re.sub(r"max_sessions_per_user = \d+\nsession_limit_action = \"\w+\"\n", "",
                  d.config.read_text())  # fmt: skip
    d.config.write_text(
        text.replace(
            LIMIT, f'{LIMIT}max_sessions_per_user = {limit}\nsession_limit_action = "{action}"\n'
        )
    )


@pytest.fixture(scope="module")
def daemon(
    net: Netns, freeradius: FreeRadius, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = Daemon(net, tmp_path_factory.mktemp("workers-limits"), workers=2)
    try:
        d.prepare()
        d.config.write_text(d.config.read_text() + CONFIG)
        set_limit(d, 2, "deny")
        d.start()
        yield d
    finally:
        d.stop()


def worker_of(sid: int) -> int:
    return (sid - 1) % 2


def logged_workers(d: Daemon, pattern: str) -> list[int]:
    """The workers of the sessions whose log lines match ``pattern`` ("[id] ..." lines)."""
    return [worker_of(int(m.group(1))) for m in re.finditer(r"\[(\d+)\] " + pattern, d.log_text())]


def alice_on_both_workers(net: Netns, d: Daemon) -> Pool:
    """A pool client holding two sessions of alice, one on each worker."""
    pool = Pool(net, d)
    for _ in range(20):
        for _ in range(2):
            assert len(pool.say("open 1")["opened"]) == 1
        if {r["worker"] for r in sessions(d)} == {0, 1}:
            return pool
        pool.say("closeall")
        wait_for("alice's sessions to end", lambda: not sessions(d))
    pool.close()
    raise AssertionError("two sessions never landed on different workers")


def test_max_sessions_per_user_deny_counts_across_workers(net: Netns, daemon: Daemon) -> None:
    pool = alice_on_both_workers(net, daemon)
    try:
        # each worker holds one of alice's sessions: per worker, there would be room
        refusal = r"\S+ refused: user 'alice' already has 2 sessions"
        for attempt in range(30):
            res = connect(net, daemon)
            assert res["ok"] is False, res
            assert len(sessions(daemon)) == 2
            if attempt >= 3 and set(logged_workers(daemon, refusal)) == {0, 1}:
                break
        assert set(logged_workers(daemon, refusal)) == {0, 1}  # both workers refused
        assert pool.say("ping")["replies"] == 2  # the two sessions never noticed
        assert daemon.stats()["handshakes"]["limit_user"] >= 4
    finally:
        pool.close()
    wait_for("alice's sessions to end", lambda: daemon.stats()["pool_in_use"] == 0)
    assert connect(net, daemon)["ok"] is True  # the counts went back to 0


def replaced(d: Daemon, old: int) -> Any:
    """A check: the one session left, once it is not ``old``."""

    def check() -> dict[str, Any] | None:
        rows = sessions(d)
        return rows[0] if len(rows) == 1 and rows[0]["id"] != old else None

    return check


def test_max_sessions_per_user_replace_reaches_the_other_worker(
    net: Netns, daemon: Daemon
) -> None:
    set_limit(daemon, 1, "replace")
    assert control.call(sock(daemon), "reload")["workers"] == 2
    pool = Pool(net, daemon)
    crossed: list[tuple[int, int]] = []
    try:
        assert len(pool.say("open 1")["opened"]) == 1
        (old,) = sessions(daemon)
        for _ in range(20):
            assert len(pool.say("open 1")["opened"]) == 1
            new = wait_for("the older session to be replaced", replaced(daemon, old["id"]))
            daemon.wait_log(f"[{old['id']}] ")
            assert re.search(
                rf"\[{old['id']}\] \S+ user 'alice' replaced by session {new['id']}\b",
                daemon.log_text(),
            )
            if old["worker"] != new["worker"]:
                crossed.append((old["worker"], new["worker"]))
                if len(crossed) >= 2 and len(set(crossed)) == 2:
                    break
            old = new
        assert crossed, "no replacement crossed workers"
        assert pool.say("ping")["replies"] == 1  # only the newest session is left
    finally:
        pool.close()
        set_limit(daemon, 2, "deny")
        control.call(sock(daemon), "reload")
    wait_for("alice's sessions to end", lambda: daemon.stats()["pool_in_use"] == 0)


def test_failed_login_throttle_blocks_on_every_worker(net: Netns, daemon: Daemon) -> None:
    res = finish(hostile(net, daemon, "guess", "--count", "10", "--user", "bob",
                         "--source", ATTACKER))["results"]  # fmt: skip
    answered = [r for r in res if isinstance(r, float)]
    # per worker, each could have taken BLOCK_AFTER failures before blocking
    assert len(answered) == BLOCK_AFTER, res
    assert res[BLOCK_AFTER:] == ["refused"] * (10 - BLOCK_AFTER), res
    failed = logged_workers(daemon, rf"{ATTACKER}:\d+ user 'bob' authentication failed")
    assert len(failed) == BLOCK_AFTER
    refused = rf"{ATTACKER}:\d+ refused: blocked"
    for _ in range(30):  # until both workers have refused the blocked source
        if set(logged_workers(daemon, refused)) == {0, 1}:
            break
        more = finish(hostile(net, daemon, "guess", "--user", "x", "--source", ATTACKER))
        assert more["results"] == ["refused"], more
    assert set(logged_workers(daemon, refused)) == {0, 1}
    log = daemon.log_text()
    assert log.count(f"blocked source {ATTACKER} for 120 s") == 1, log[-3000:]
    assert log.count("blocked user 'bob' for 120 s") == 1
    # the user name is blocked from any address on any worker, even with its password
    for _ in range(2):
        res2 = connect(net, daemon, "bob")
        assert res2["ok"] is False and res2["code"] == 691, res2
    st = daemon.stats()
    assert st["auth_blocks"] == 2 and st["auth_blocked"] == {"sources": 1, "users": 1}
    assert st["handshakes"]["blocked"] >= 10 - BLOCK_AFTER
    assert connect(net, daemon, "carol")["ok"] is True  # others are not affected


def test_a_killed_worker_releases_its_sessions_sends_their_stops_and_keeps_its_counters(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    pool = alice_on_both_workers(net, daemon)
    try:
        assert pool.say("ping")["replies"] == 2
        rows = sessions(daemon)  # the supervisor notes each session's traffic
        (victim,) = [r for r in rows if r["worker"] == 1]
        (survivor,) = [r for r in rows if r["worker"] == 0]
        assert victim["rx_bytes"] > 0
        before = daemon.stats()
        start = wait_for(
            "the victim's Accounting-Start",
            lambda: [r for r in freeradius.records()
                     if r.get("Acct-Status-Type") == "Start"
                     and r.get("Framed-IP-Address") == victim["address"]],
        )[-1]  # fmt: skip
        sid = start["Acct-Session-Id"]
        # more traffic, which only an Interim-Update tells the supervisor of
        assert pool.say("ping")["replies"] == 2
        interim = wait_for(
            "an Interim-Update with the new traffic",
            lambda: [r for r in freeradius.records()
                     if r.get("Acct-Status-Type") == "Interim-Update"
                     and r.get("Acct-Session-Id") == sid
                     and int(r["Acct-Input-Octets"]) > victim["rx_bytes"]],
        )[-1]  # fmt: skip
        os.kill(worker_pids(daemon)[1], signal.SIGKILL)
        wait_for(
            "worker 1 to be restarted",
            lambda: (lambda st: st["worker_restarts"] == 1 and st["workers_running"] == 2)(
                daemon.stats()
            ),
        )
        log = daemon.wait_log("worker 1: released 1 sessions of 1 users ('alice')")
        assert "Traceback" not in log
        # the dead worker's session no longer counts: alice may log in again (limit 2)
        assert connect(net, daemon)["ok"] is True
        # the Stop the dead worker could not send, from the supervisor
        stop = wait_for(
            "the Accounting-Stop of the dead worker's session",
            lambda: [r for r in freeradius.records()
                     if r.get("Acct-Status-Type") == "Stop" and r.get("Acct-Session-Id") == sid],
        )  # fmt: skip
        assert len(stop) == 1, stop
        assert stop[0]["Acct-Terminate-Cause"] == "NAS-Error"
        assert stop[0]["User-Name"] == "alice"
        assert stop[0]["Framed-IP-Address"] == victim["address"]
        # the last traffic known: the Interim-Update's (no traffic since)
        assert stop[0]["Acct-Input-Octets"] == interim["Acct-Input-Octets"]
        assert stop[0]["Acct-Output-Octets"] == interim["Acct-Output-Octets"]
        assert int(stop[0]["Acct-Session-Time"]) >= 0
        # the totals did not go backwards though worker 1 restarted from zero
        after = daemon.stats()
        for key in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "auth_failures"):
            assert after[key] >= before[key], (key, before[key], after[key])
        for k, n in before["handshakes"].items():
            assert after["handshakes"][k] >= n, (k, n, after["handshakes"][k])
        assert after["handshake_latency"]["count"] >= before["handshake_latency"]["count"]
        assert after["auth_blocks"] >= before["auth_blocks"]
        # worker 0's session never noticed
        assert survivor["id"] in {r["id"] for r in sessions(daemon)}
        assert pool.say("pingeach")["by_address"][survivor["address"]] == 1
    finally:
        pool.close()
    wait_for("every session to end", lambda: daemon.stats()["pool_in_use"] == 0)


def test_a_dead_workers_stop_carries_the_traffic_of_the_last_refresh(
    net: Netns, daemon: Daemon, freeradius: FreeRadius
) -> None:
    """No Interim-Update (interim_interval = 600 for these sessions) and no sstpctl call
    after the pings: the supervisor's refresh alone tells it of the traffic, and the
    Stop it sends for the dead worker's session carries it."""
    text = daemon.config.read_text()
    daemon.config.write_text(text.replace("interim_interval = 2\n", "interim_interval = 600\n"))
    try:
        assert control.call(sock(daemon), "reload")["workers"] == 2
        pool = alice_on_both_workers(net, daemon)
        try:
            (victim,) = [r for r in sessions(daemon) if r["worker"] == 1]
            restarts = daemon.stats()["worker_restarts"]
            pid = worker_pids(daemon)[1]
            sid = wait_for(
                "the victim's Accounting-Start",
                lambda: [r for r in freeradius.records()
                         if r.get("Acct-Status-Type") == "Start"
                         and r.get("Framed-IP-Address") == victim["address"]],
            )[-1]["Acct-Session-Id"]  # fmt: skip
            for _ in range(5):
                assert pool.say("ping")["replies"] == 2
            time.sleep(REFRESH_INTERVAL + 3)  # one refresh after the pings
            os.kill(pid, signal.SIGKILL)
            wait_for(
                "worker 1 to be restarted",
                lambda: daemon.stats()["worker_restarts"] == restarts + 1,
            )
            stop = wait_for(
                "the Accounting-Stop of the dead worker's session",
                lambda: [r for r in freeradius.records()
                         if r.get("Acct-Status-Type") == "Stop"
                         and r.get("Acct-Session-Id") == sid],
            )  # fmt: skip
            assert len(stop) == 1, stop
            interims = [r for r in freeradius.records()
                        if r.get("Acct-Status-Type") == "Interim-Update"
                        and r.get("Acct-Session-Id") == sid]  # fmt: skip
            assert not interims, interims
            # five echo requests of 28 bytes and more since the last sessions answer
            grew = int(stop[0]["Acct-Input-Octets"]) - victim["rx_bytes"]
            assert grew >= 5 * 28, (stop[0], victim)
            assert int(stop[0]["Acct-Input-Packets"]) - victim["rx_packets"] >= 5, stop[0]
        finally:
            pool.close()
    finally:
        daemon.config.write_text(text)
        assert control.call(sock(daemon), "reload")["workers"] == 2
    wait_for("every session to end", lambda: daemon.stats()["pool_in_use"] == 0)


def test_a_supervisor_that_does_not_answer_refuses_logins(net: Netns, daemon: Daemon) -> None:
    """Fail closed: a stopped supervisor (SIGSTOP) cannot check the limits, so a worker
    refuses the login after REGISTRY_TIMEOUT (5 s) instead of letting it through."""
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        res = connect(net, daemon, "carol")
        took = time.monotonic() - t0
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    assert res["ok"] is False and res["code"] == 691, res
    assert took >= 5.0, took
    daemon.wait_log("the supervisor did not answer 'check' in 5 s")
    assert connect(net, daemon, "carol")["ok"] is True  # answered again: logins work


def test_no_traceback_and_user_counts_back_to_zero(net: Netns, daemon: Daemon) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.log_text()
    assert daemon.stats()["internal_errors"] == 0
    # two fresh sessions of alice fit again: nothing of the earlier ones is counted
    pool = Pool(net, daemon)
    try:
        assert len(pool.say("open 2")["opened"]) == 2
        assert pool.say("open 1")["opened"] == []
    finally:
        pool.close()
