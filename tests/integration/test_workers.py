"""server.workers = 2 against the real daemon: one supervisor, two worker processes
sharing port 443, a TUN and a pool slice each, one control socket over both.

Every session is pinged through (echo to the server's tunnel address): the reply is
routed by the kernel, so it comes back only if the session's address is routed to the
TUN of the worker that holds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from sstpd import control
from sstpd.aio.refresh import REFRESH_INTERVAL
from sstpd.records import DrainRecord, StatsRecord
from sstpd.status.metrics import render_metrics
from tests.integration.netns import ROOT, SERVER_IP, USERS, Daemon, Netns, namespaces, wait_for

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

SLICES = {0: IPv4Network("10.77.0.0/25"), 1: IPv4Network("10.77.0.128/25")}
TUNS = {0: "sstp0", 1: "sstp0w1"}
STATIC = "10.77.0.200"  # carol's: in worker 1's slice, wherever her session lands


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdw") as n:
        yield n


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(net, tmp_path_factory.mktemp("workers"), workers=2)
    try:
        d.prepare()
        users = d.workdir / "users"
        users.write_text(
            "".join(
                line + (f":{STATIC}" if line.startswith("carol:") else "") + "\n"
                for line in users.read_text().splitlines()
            )
        )
        d.start()
        yield d
    finally:
        d.stop()


class Pool:
    """One client_tool "pool" process in the client namespace (many tunnels, one user)."""

    def __init__(self, net: Netns, d: Daemon, user: str = "alice") -> None:
        self.proc = net.popen(
            net.cli,
            sys.executable,
            "-m",
            "tests.integration.client_tool",
            "pool",
            "--host",
            SERVER_IP,
            "--ca-file",
            str(d.cert),
            "--user",
            user,
            "--password",
            USERS[user],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def say(self, cmd: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"pool client exited on {cmd!r}"
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sock(d: Daemon) -> str:
    return str(d.workdir / "control.sock")


def sessions(d: Daemon) -> list[dict[str, Any]]:
    return control.call(sock(d), "sessions")["sessions"]  # type: ignore[no-any-return]


def ctl(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sstpd.ctl", "--socket", sock(d), *args],
        text=True,
        capture_output=True,
        cwd=str(ROOT),
        timeout=30,
    )


def route_dev(net: Netns, address: str) -> str:
    out = net.run(net.srv, "ip", "-4", "route", "get", address).stdout.split()
    return out[out.index("dev") + 1]


def host_routes(net: Netns) -> list[str]:
    return [
        line
        for line in net.run(
            net.srv, "ip", "-4", "route", "show", "proto", "static"
        ).stdout.splitlines()
        if line.startswith(STATIC)
    ]


def worker_pids(d: Daemon) -> dict[int, int]:
    return {int(k): int(v) for k, v in d.stats()["worker_pids"].items()}


# ---------------------------------------------------------------------------------------


def test_ready_once_both_workers_listen(net: Netns, daemon: Daemon) -> None:
    ready = [m for m in daemon.notify_messages if "READY=1" in m]
    assert len(ready) == 1 and "2 workers" in ready[0], daemon.notify_messages
    links = net.run(net.srv, "ip", "-br", "link").stdout
    assert "sstp0 " in links and "sstp0w1 " in links
    routes = net.run(net.srv, "ip", "-4", "route").stdout
    assert "10.77.0.0/25 dev sstp0 " in routes
    assert "10.77.0.128/25 dev sstp0w1 " in routes
    # three processes: the supervisor and its two workers, each listening on the port
    pids = worker_pids(daemon)
    assert daemon.proc is not None and set(pids) == {0, 1}
    for pid in pids.values():
        assert Path(f"/proc/{pid}").exists() and pid != daemon.proc.pid
    # every client address of the pool routes to the TUN of the worker whose slice has it
    hosts = [a for a in IPv4Network("10.77.0.0/24").hosts() if str(a) != "10.77.0.1"]
    batch = "".join(f"route get {a}\n" for a in hosts)
    out = subprocess.run(
        ["ip", "-n", net.srv, "-o", "-batch", "-"],
        input=batch,
        text=True,
        capture_output=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == len(hosts) == 253
    for a, line in zip(hosts, out, strict=True):
        words = line.split()
        owner = 0 if a in SLICES[0] else 1
        assert words[0] == str(a) and words[words.index("dev") + 1] == TUNS[owner], line
    listeners = net.run(net.srv, "ss", "-Hltnp", "sport", "= :443").stdout
    assert sum(f"pid={pid}," in listeners for pid in pids.values()) == 2, listeners


def test_sessions_land_on_both_workers_and_every_address_routes_back(
    net: Netns, daemon: Daemon
) -> None:
    pool = Pool(net, daemon)
    try:
        opened = pool.say("open 24")
        assert len(opened["opened"]) == 24, opened
        rows = sessions(daemon)
        assert len(rows) == 24
        by_worker = {w: [r for r in rows if r["worker"] == w] for w in (0, 1)}
        assert len(by_worker[0]) >= 3 and len(by_worker[1]) >= 3, {
            w: len(r) for w, r in by_worker.items()
        }
        for w, mine in by_worker.items():
            for r in mine:
                assert IPv4Address(r["address"]) in SLICES[w], (w, r["address"])
                assert route_dev(net, r["address"]) == TUNS[w]
        assert len({r["id"] for r in rows}) == 24  # ids unique across workers
        answer = pool.say("pingeach")
        assert answer["replies"] == 24, answer
        assert set(answer["by_address"]) == {r["address"] for r in rows}

        # sstpctl and /metrics see both workers as one daemon
        st = daemon.stats()
        assert st["sessions"] == 24 and st["pool_in_use"] == 24 and st["pool_size"] == 251
        assert st["handshakes"]["opened"] >= 24
        assert st["rx_packets"] >= 24 and st["tx_packets"] >= 24
        assert st["max_sessions"] == 1000
        assert st["worker_sessions"] == {"0": len(by_worker[0]), "1": len(by_worker[1])}
        rec = StatsRecord.from_json(st)  # what sstpctl and the status app read
        metrics = render_metrics(rec)
        assert "sstpd_sessions 24.0\n" in metrics and "sstpd_workers 2.0\n" in metrics
        text = ctl(daemon, "stats").stdout
        assert f"sessions w0 {len(by_worker[0])}, w1 {len(by_worker[1])}" in text, text
        table = ctl(daemon, "sessions")
        assert table.returncode == 0 and table.stdout.count("alice") == 24

        # kick one session of worker 1 by id: the supervisor finds the worker
        target = by_worker[1][0]
        kicked = control.call(sock(daemon), "kick", id=target["id"])
        assert kicked["kicked"] == [target["id"]]
        wait_for("the kicked session to close", lambda: len(sessions(daemon)) == 23)
        assert target["id"] not in {r["id"] for r in sessions(daemon)}
        assert control.request(sock(daemon), "kick", id=999_999)["ok"] is False
    finally:
        pool.close()
    wait_for("all sessions to end", lambda: daemon.stats()["pool_in_use"] == 0)


def test_static_address_works_on_either_worker_and_is_held_once(net: Netns, daemon: Daemon) -> None:
    pool = Pool(net, daemon, user="carol")
    seen: set[int] = set()
    try:
        for _ in range(16):
            opened = pool.say("open 1")
            assert opened["opened"] == [STATIC], opened
            (row,) = sessions(daemon)
            worker = int(row["worker"])
            seen.add(worker)
            # the /32 points at the worker that holds the session, whatever its slice
            assert route_dev(net, STATIC) == TUNS[worker]
            assert pool.say("ping")["replies"] == 1
            # a second session of carol, wherever it lands, cannot take the address
            second = pool.say("open 1")
            assert second["opened"] == [] and second["errors"], second
            assert len(sessions(daemon)) == 1
            assert pool.say("closeall")["closed"] == 1
            wait_for("carol's session to end", lambda: not sessions(daemon))
            wait_for("the /32 to go", lambda: not host_routes(net))
            if seen == {0, 1}:
                break
        assert seen == {0, 1}, f"carol's sessions only landed on worker(s) {seen}"
    finally:
        pool.close()


def test_drain_and_reload_reach_every_worker(net: Netns, daemon: Daemon) -> None:
    pool = Pool(net, daemon)
    try:
        held = pool.say("open 2")  # open sessions go on through the drain
        assert len(held["opened"]) == 2, held
        r = ctl(daemon, "drain")  # sstpctl reads the supervisor's merged DrainRecord
        assert r.returncode == 0 and r.stdout.endswith("2 open sessions continue\n"), r.stdout
        try:
            health = control.call(sock(daemon), "health")
            assert health["status"] == "draining"
            refused = pool.say("open 8")
            assert refused["opened"] == [] and len(refused["errors"]) == 8, refused
        finally:
            undrained = DrainRecord.from_json(control.call(sock(daemon), "undrain"))
        assert undrained.sessions == 2 and undrained.health.accepting, undrained
        assert pool.say("closeall")["closed"] == 2
    finally:
        pool.close()
    wait_for("the sessions to end", lambda: not sessions(daemon))
    assert control.call(sock(daemon), "health")["status"] == "ok"

    text = daemon.config.read_text()
    daemon.config.write_text(
        text.replace('dns = ["10.77.0.53", "10.77.0.54"]', 'dns = ["10.77.0.99"]')
    )
    try:
        answer = control.call(sock(daemon), "reload")
        assert answer["workers"] == 2 and "tunnel.dns" in answer["changed"], answer
        assert daemon.log_text().count("reloaded ") >= 2
        # new sessions get the new DNS from both workers
        pool = Pool(net, daemon)
        try:
            assert len(pool.say("open 12")["opened"]) == 12
            assert {r["worker"] for r in sessions(daemon)} == {0, 1}
        finally:
            pool.close()
        dns = net.client_tool("ping", "--host", SERVER_IP, "--ca-file", str(daemon.cert))["dns"]
        assert dns == ["10.77.0.99"]
    finally:
        daemon.config.write_text(text)
        # SIGHUP to the supervisor (systemctl reload) reaches both workers too
        before = daemon.log_text().count("reloaded ")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(
            "both workers to reload", lambda: daemon.log_text().count("reloaded ") >= before + 2
        )
    wait_for("all sessions to end", lambda: daemon.stats()["pool_in_use"] == 0)


def test_a_killed_worker_is_restarted_and_the_other_keeps_its_sessions(
    net: Netns, daemon: Daemon
) -> None:
    pool = Pool(net, daemon)
    try:
        assert len(pool.say("open 16")["opened"]) == 16
        rows = sessions(daemon)
        survivors = {r["address"] for r in rows if r["worker"] == 0}
        victims = {r["address"] for r in rows if r["worker"] == 1}
        assert survivors and victims
        before = worker_pids(daemon)
        os.kill(before[1], signal.SIGKILL)
        wait_for(
            "worker 1 to be restarted",
            lambda: (lambda st: st["worker_restarts"] == 1 and st["workers_running"] == 2)(
                daemon.stats()
            ),
        )
        after = worker_pids(daemon)
        assert after[0] == before[0] and after[1] != before[1]
        # worker 0's sessions never noticed; worker 1's are gone with it
        answer = pool.say("pingeach")
        alive = {a for a, n in answer["by_address"].items() if n}
        assert alive == survivors, (alive, survivors)
        rows = sessions(daemon)
        assert {r["address"] for r in rows} == survivors
        assert daemon.stats()["pool_in_use"] == len(survivors)
        assert "worker 1 (pid" in daemon.log_text() and "died (signal 9)" in daemon.log_text()
        # the restarted worker owns its TUN and slice again: new sessions there work
        new = Pool(net, daemon)
        try:
            assert len(new.say("open 10")["opened"]) == 10
            assert {r["worker"] for r in sessions(daemon)} == {0, 1}
            assert new.say("ping")["replies"] == 10
        finally:
            new.close()
        assert route_dev(net, "10.77.0.130") == "sstp0w1"
    finally:
        pool.close()


def test_a_killed_worker_keeps_what_it_counted_up_to_the_last_refresh(
    net: Netns, daemon: Daemon
) -> None:
    """The supervisor asks each worker for its stats every REFRESH_INTERVAL: traffic
    counted before the last refresh survives a kill -9 even if nobody ran sstpctl."""
    pool = Pool(net, daemon)
    try:
        assert len(pool.say("open 8")["opened"]) == 8
        rows = sessions(daemon)
        worker = {r["address"]: r["worker"] for r in rows}
        assert set(worker.values()) == {0, 1}, worker
        pid = worker_pids(daemon)[1]
        before = daemon.stats()  # the last control request until the kill
        replies = {0: 0, 1: 0}
        for _ in range(10):
            for address, n in pool.say("pingeach")["by_address"].items():
                replies[worker[address]] += n
        assert replies[1] >= 10, replies
        time.sleep(REFRESH_INTERVAL + 3)  # one refresh after the pings, no sstpctl
        os.kill(pid, signal.SIGKILL)
        wait_for(
            "worker 1 to be restarted",
            lambda: (
                lambda st: st["worker_restarts"] == before["worker_restarts"] + 1
                and st["workers_running"] == 2
            )(daemon.stats()),
        )
        after = daemon.stats()
        # every echo request that got a reply was counted, on both workers: worker 1's
        # as of the refresh, before it died
        grew = after["rx_packets"] - before["rx_packets"]
        assert grew >= replies[0] + replies[1], (grew, replies)
        assert after["tx_packets"] - before["tx_packets"] >= replies[0] + replies[1]
    finally:
        pool.close()
    wait_for("all sessions to end", lambda: daemon.stats()["pool_in_use"] == 0)


def test_sigterm_stops_every_worker(net: Netns, daemon: Daemon) -> None:
    pids = worker_pids(daemon)
    pool = Pool(net, daemon)
    try:
        assert len(pool.say("open 6")["opened"]) == 6
        assert daemon.stop() == 0
        for pid in pids.values():
            assert not Path(f"/proc/{pid}").exists()
        links = net.run(net.srv, "ip", "-br", "link").stdout
        assert "sstp0" not in links
        assert not os.path.exists(sock(daemon))
        log = daemon.log_text()
        assert log.count("closed: server shutting down") == 6, log[-3000:]
    finally:
        pool.close()


def test_workers_stop_when_the_supervisor_is_killed(
    net: Netns, tmp_path_factory: pytest.TempPathFactory
) -> None:
    d = Daemon(net, tmp_path_factory.mktemp("workers-orphans"), workers=2)
    d.prepare()
    d.start()
    try:
        pids = worker_pids(d)
        assert d.proc is not None
        d.proc.kill()  # SIGKILL: no chance to stop the workers itself
        d.proc.wait()
        wait_for(
            "the workers to notice and stop",
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids.values()),
        )
        assert "the supervisor is gone: stopping" in d.log_text()
    finally:
        d.proc = None
        d.logf.close()


def test_a_worker_that_cannot_start_fails_the_start(
    net: Netns, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # something else holds the port without SO_REUSEPORT: the workers cannot bind
    blocker = net.popen(
        net.srv,
        sys.executable,
        "-c",
        "import socket, time; s = socket.create_server(('10.231.100.1', 443)); time.sleep(60)",
    )
    try:
        time.sleep(1.0)
        d = Daemon(net, tmp_path_factory.mktemp("workers-nostart"), workers=2)
        d.prepare()
        with pytest.raises(AssertionError, match="did not become ready"):
            d.start()
        assert "a worker did not start: stopping" in d.log_text()
        assert "sstp0" not in net.run(net.srv, "ip", "-br", "link").stdout
    finally:
        blocker.kill()
        blocker.wait()
