"""Many concurrent sessions through one daemon (issue 15, memory per session).

Every connection reads into one shared receive buffer (``sstpd.aio.protocol``), and the
heap is trimmed after many sessions close (``sstpd.aio.heap``). Here 300 tunnels open at
once; each sends a burst of echo requests of mixed sizes up to the MTU in one batch (every
other tunnel one TLS record per packet, the others many packets per record, so SSTP
packets are split across reads), and every reply must carry its request's exact payload.
After they all close, the accounting is back where it started (descriptors, pool,
sessions, pending) and the daemon says it gave the freed heap back. No timing or memory
figure is asserted: bench/memory.py measures those.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.netns import Daemon, Netns, namespaces, wait_for

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

SESSIONS = 300  # above SESSION_TRIM_HIGH (256): closing them all is worth a heap trim
BURST = 24


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpms") as n:
        yield n


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(
        net,
        tmp_path_factory.mktemp("many"),
        tunnel_ip="10.78.0.1",
        pool="10.78.0.0/22",
        extra_config="max_sessions = 1000",
        wrapper=["prlimit", "--nofile=4096:4096"],
    )
    try:
        d.prepare()
        text = d.config.read_text().replace('level = "debug"', 'level = "info"')
        # every tunnel comes from the one client address: room for all handshakes at once
        d.config.write_text(text + "\n[limits]\npending_total = 1000\npending_per_source = 1000\n")
        d.start()
        yield d
    finally:
        d.stop()


def test_many_sessions_carry_data_and_give_everything_back(daemon: Daemon, net: Netns) -> None:
    before = daemon.stats()
    assert before["sessions"] == before["pool_in_use"] == before["pending"] == 0
    base_fds = daemon.open_fds()
    res = net.client_tool(
        "echo-burst",
        *daemon.client_args(),
        "--sessions",
        str(SESSIONS),
        "--count",
        str(BURST),
        "--timeout",
        "120",
        timeout=600,
    )
    assert res["errors"] == [] and res["opened"] == SESSIONS, res
    assert res["bad"] == 0, res  # no reply with another request's bytes
    assert res["good"] == res["sent"] == SESSIONS * BURST, res
    assert res["tunnels_complete"] == SESSIONS

    def settled() -> bool:
        st = daemon.stats()
        return st["sessions"] == st["authenticated"] == st["pool_in_use"] == st["pending"] == 0

    wait_for("every session closed and the pool empty", settled, 60, interval=0.3)
    st = daemon.stats()
    assert st["rx_packets"] - before["rx_packets"] >= SESSIONS * BURST
    assert st["internal_errors"] == 0
    assert st["dropped_spoofed"] == 0
    wait_for(
        "the descriptors back to baseline", lambda: daemon.open_fds() == base_fds, 30, interval=0.3
    )
    # the session trimmer ran once the count fell to half of its peak (2 s later), and
    # again after the rest closed (at most 10 s after that)
    log = daemon.wait_log("sessions fell to", 30)
    assert "Traceback" not in log
