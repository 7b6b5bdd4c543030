"""ACME HTTP-01 with server.workers = 2 and Debian's pebble: one responder on port 80, in
the supervisor (bound once), the certificate written once and served by both workers;
a renewal by the schedule (short-lived certificates) reaches both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.netns import ROOT, SERVER_IP, USERS, Daemon, Netns, namespaces, wait_for
from tests.integration.pebble import (
    NAME,
    Pebble,
    acme_section,
    cert_state,
    pebble_running,
    start_without_certificate,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
    pytest.mark.skipif(shutil.which("pebble") is None, reason="needs Debian's pebble"),
]

VALIDITY = 45
SESSIONS = 12


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpah") as n:
        yield n


@pytest.fixture(scope="module")
def pebble(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with pebble_running(
        Pebble(net, tmp_path_factory.mktemp("pebble-http-workers"), validity=VALIDITY)
    ) as p:
        yield p


@pytest.fixture(scope="module")
def daemon(
    net: Netns, pebble: Pebble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = Daemon(
        net,
        tmp_path_factory.mktemp("acme-http-workers"),
        workers=2,
        extra_config=acme_section(pebble, challenge="http-01"),
    )
    start_without_certificate(d)
    yield d
    d.stop()


def cert_state_when(
    d: Daemon, check: Callable[[dict[str, Any]], Any]
) -> Callable[[], dict[str, Any] | None]:
    """For ``wait_for``: the daemon's certificate state once ``check`` accepts it."""

    def poll() -> dict[str, Any] | None:
        ans = cert_state(d)
        return ans if check(ans) else None

    return poll


def sessions_by_worker(net: Netns, d: Daemon, root: str) -> dict[int, set[str]]:
    pool = net.popen(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.client_tool",
        "pool",
        "--host",
        SERVER_IP,
        "--ca-file",
        root,
        "--server-name",
        NAME,
        "--password",
        USERS["alice"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert pool.stdin is not None and pool.stdout is not None
    try:
        pool.stdin.write(f"open {SESSIONS}\n")
        pool.stdin.flush()
        assert len(json.loads(pool.stdout.readline())["opened"]) == SESSIONS
        ctl = [sys.executable, "-m", "sstpd.ctl", "--socket", str(d.workdir / "control.sock")]
        r = subprocess.run(
            [*ctl, "--json", "sessions"],
            text=True,
            capture_output=True,
            cwd=str(ROOT),
            timeout=30,
            check=True,
        )
        out: dict[int, set[str]] = {}
        for row in json.loads(r.stdout)["sessions"]:
            out.setdefault(row["worker"], set()).add(row["cert_hash"])
        return out
    finally:
        pool.stdin.close()
        try:
            pool.wait(30)
        except subprocess.TimeoutExpired:
            pool.kill()
            pool.wait()


def test_one_responder_in_the_supervisor_and_both_workers_serve_the_certificate(
    daemon: Daemon, net: Netns, pebble: Pebble
) -> None:
    ans = wait_for(
        "a certificate from pebble",
        cert_state_when(daemon, lambda a: a["certificate"] and not a["certificate"]["self_signed"]),
        90,
        interval=0.5,
        detail=lambda: daemon.log_text()[-5000:],
    )
    sha = ans["certificate"]["sha256"]
    log = daemon.log_text()
    assert log.count("ACME: http-01 responder on port 80") == 1
    assert log.count("ACME: installed the certificate") == 1
    assert "alpn=acme-tls/1" not in log
    # port 80: one listening socket, the supervisor's; port 443: the two workers'
    assert daemon.proc is not None
    listeners = net.run(net.srv, "ss", "-Hltnp", "sport", "= :80").stdout.splitlines()
    assert len(listeners) == 1 and f"pid={daemon.proc.pid}," in listeners[0], listeners
    pids = {int(p) for p in daemon.stats()["worker_pids"].values()}
    assert len(pids) == 2 and daemon.proc.pid not in pids
    assert [(w["worker"], w["sha256"]) for w in ans["workers"]] == [(0, sha), (1, sha)]
    root = daemon.workdir / "pebble-root.pem"
    root.write_bytes(pebble.root())
    assert sessions_by_worker(net, daemon, str(root)) == {0: {sha}, 1: {sha}}


def test_renewal_by_the_schedule_reaches_both_workers(
    daemon: Daemon, net: Netns, pebble: Pebble
) -> None:
    first = cert_state(daemon)
    old = first["certificate"]["sha256"]
    ans = wait_for(
        "the renewal",
        cert_state_when(
            daemon, lambda a: a["certificate"]["sha256"] != old and not a["acme"]["in_progress"]
        ),
        VALIDITY + 30,
        interval=0.5,
        detail=lambda: daemon.log_text()[-5000:],
    )
    new = ans["certificate"]["sha256"]
    assert {w["sha256"] for w in ans["workers"]} == {new}
    assert ans["acme"]["renewals"] == first["acme"]["renewals"] + 1
    root = daemon.workdir / "pebble-root.pem"
    root.write_bytes(pebble.root())
    assert sessions_by_worker(net, daemon, str(root)) == {0: {new}, 1: {new}}
