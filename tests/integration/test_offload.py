"""The TUN offload (``[tunnel] offload``, userspace GRO) and read moderation (``[tunnel]
read_moderation_bytes``) against the plain data path.

Three daemons side by side in one pair of namespaces: ``on`` with ``offload = true``
(port 443, ``sstp0``), ``off`` with ``offload = false`` (port 444, ``sstp1``), both with
the default read moderation, and ``plain`` with neither (port 445, ``sstp2``); the
package's client with a real TUN and real kernel TCP on both ends:

* the same multi-megabyte transfers, both ways, with and without ``--record-per-packet``,
  arrive intact (SHA-256) through all three, only the offload daemon coalesced, and the
  reads of the two moderated daemons were moderated while the plain one's were not;
* the same hostile frames (spoofed sources, IP versions other than 4, IP lengths beyond
  and short of the frame, frames before the session is open), mixed into bursts of
  coalescable TCP segments, give the same drops and counters on both, the same datagrams
  reach a UDP sink, and the session survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import SERVER_IP, Daemon, Netns, namespaces, running, sstpd_connect

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]

# mode -> (port, TUN, tunnel address, pool)
MODES = {
    "on": (443, "sstp0", "10.77.0.1", "10.77.0.0/24"),
    "off": (444, "sstp1", "10.79.0.1", "10.79.0.0/24"),
    "plain": (445, "sstp2", "10.81.0.1", "10.81.0.0/24"),
}
TUNNEL_CONFIG = {
    "on": "offload = true",
    "off": "offload = false",
    "plain": "offload = false\nread_moderation_bytes = 0",
}
SIZE = 12 * 1024 * 1024
SINK_PORT = 9999
COUNTERS = ("rx_packets", "rx_bytes", "dropped_spoofed", "dropped_not_open", "tun_no_route")

SINK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(60)  # the first datagram comes once the session is up
print("ready", flush=True)
try:
    while True:
        data, _ = s.recvfrom(65536)
        print(data.hex(), flush=True)
        s.settimeout(float(sys.argv[2]))
except TimeoutError:
    pass
"""


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdo") as n:
        yield n


@pytest.fixture(scope="module")
def daemons(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    with contextlib.ExitStack() as stack:
        out: dict[str, Daemon] = {}
        for mode, (port, tun, addr, pool) in MODES.items():
            d = Daemon(
                net,
                tmp_path_factory.mktemp(f"offload-{mode}"),
                tunnel_config=TUNNEL_CONFIG[mode],
                port=port,
                interface=tun,
                tunnel_ip=addr,
                pool=pool,
            )
            out[mode] = stack.enter_context(running(d))
        yield out


def deltas(
    before: dict[str, object], after: dict[str, object], keys: tuple[str, ...]
) -> dict[str, int]:
    return {k: int(after[k]) - int(before[k]) for k in keys}  # type: ignore[call-overload]


def test_offload_is_what_the_config_says(daemons: dict[str, Daemon]) -> None:
    assert daemons["on"].stats()["tun_offload"] is True
    assert daemons["off"].stats()["tun_offload"] is False
    assert daemons["plain"].stats()["tun_offload"] is False


@pytest.mark.parametrize("record_per_packet", [False, True])
def test_offload_on_and_off_deliver_identical_bytes(
    daemons: dict[str, Daemon], net: Netns, tmp_path: Path, record_per_packet: bool
) -> None:
    digests: dict[tuple[str, str], tuple[str, str]] = {}
    coalesced: dict[str, dict[str, int]] = {}
    for mode, (_, _, addr, pool) in MODES.items():
        d = daemons[mode]
        options = ("--route", pool, *(["--record-per-packet"] if record_per_packet else []))
        with sstpd_connect(net, d, tmp_path, "sstpc0", *options) as (client, info):
            assert info["peer"] == addr, info
            before = d.stats()
            for direction in ("up", "down"):
                digests[(mode, direction)] = net.bulk_transfer(addr, direction, SIZE)
            coalesced[mode] = deltas(
                before, d.stats(), ("rx_gso_writes", "rx_gso_packets", "read_moderations")
            )
        assert client.returncode == 0
    for direction in ("up", "down"):
        got_on, sent_on = digests[("on", direction)]
        got_off, sent_off = digests[("off", direction)]
        got_plain, sent_plain = digests[("plain", direction)]
        assert got_on == sent_on == got_off == sent_off == got_plain == sent_plain, direction
    # the offload path was taken (runs of segments went as one write), the others not
    assert coalesced["on"]["rx_gso_writes"] > 0
    assert coalesced["on"]["rx_gso_packets"] > coalesced["on"]["rx_gso_writes"]
    assert coalesced["off"]["rx_gso_writes"] == coalesced["off"]["rx_gso_packets"] == 0
    assert coalesced["plain"]["rx_gso_writes"] == coalesced["plain"]["rx_gso_packets"] == 0
    # the uploads streamed: the moderated daemons moderated, the plain one never
    assert coalesced["on"]["read_moderations"] > 0
    assert coalesced["off"]["read_moderations"] > 0
    assert coalesced["plain"]["read_moderations"] == 0


Run = tuple[dict[str, int], list[str], dict[str, object], dict[str, int]]


def hostile_run(net: Netns, d: Daemon, port: int, rounds: int) -> Run:
    """The ``fastpath`` scenario of tests/integration/hostile.py against ``d``: (counter
    deltas, datagrams the UDP sink got, the scenario's result, offload counter deltas)."""
    sink = net.popen(
        net.srv, sys.executable, "-c", SINK, str(SINK_PORT), "3", stdout=subprocess.PIPE
    )
    assert sink.stdout is not None
    assert sink.stdout.readline().strip() == "ready"
    before = d.stats()
    r = net.run(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.hostile",
        "fastpath",
        "--host",
        SERVER_IP,
        "--port",
        str(port),
        "--ca-file",
        str(d.cert),
        "--count",
        str(rounds),
        "--sink-port",
        str(SINK_PORT),
        check=False,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    try:
        out, _ = sink.communicate(timeout=10)  # ends 3 s after the last datagram
    except subprocess.TimeoutExpired:  # none came: stop waiting, the asserts will say
        sink.kill()
        out, _ = sink.communicate()
    after = d.stats()
    got = sorted(bytes.fromhex(x).decode(errors="replace") for x in out.split())
    return (
        deltas(before, after, COUNTERS),
        got,
        result,
        deltas(before, after, ("rx_gso_writes", "rx_gso_packets", "internal_errors")),
    )


def test_hostile_frames_give_the_same_drops_and_counters(
    daemons: dict[str, Daemon], net: Netns
) -> None:
    rounds = 5
    runs = {mode: hostile_run(net, daemons[mode], MODES[mode][0], rounds) for mode in MODES}
    counters_on, got_on, result_on, extra_on = runs["on"]
    counters_off, got_off, result_off, extra_off = runs["off"]
    counters_plain, got_plain, result_plain, extra_plain = runs["plain"]
    for result in (result_on, result_off, result_plain):
        assert result["opened"] is True
        assert result["replies"] == 2  # the session survived every burst
    assert counters_on == counters_off == counters_plain
    # per burst: 2 foreign sources, 2 versions other than 4, 1 spoofed TCP segment
    assert counters_on["dropped_spoofed"] == 5 * rounds
    assert counters_on["dropped_not_open"] == 3
    # 4 TCP segments, trunc, over, ok, slow per burst; 2 echo requests
    assert counters_on["rx_packets"] == 8 * rounds + 2
    expected = sorted(f"{k}-{i}" for k in ("ok", "slow") for i in range(rounds))
    over = sorted(f"over-{i}" for i in range(rounds))
    assert got_on == got_off == got_plain == sorted(expected + over)
    assert extra_on["internal_errors"] == extra_off["internal_errors"] == 0
    assert extra_plain["internal_errors"] == 0
    # the bursts went through the coalescing path: 4 segments (around the hostile frames
    # between them) as one write, at least in most bursts
    assert extra_on["rx_gso_writes"] >= 1
    assert extra_off["rx_gso_writes"] == extra_plain["rx_gso_writes"] == 0
