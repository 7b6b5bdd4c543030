"""aio/datapath.py over a real datagram socket pair standing in for the TUN fd (one read,
one packet, as with IFF_NO_PI): batches, routing by destination, one write per session."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest

from sstpd.aio.datapath import TUN_BATCH, TunPump, read_batch, send_batch
from sstpd.aio.stats import Stats
from sstpd.proto.datapath import Counters
from sstpd.proto.sstp.packets import PacketReader
from tests.integration.client_tool import udp

SERVER = IPv4Address("10.77.0.1")
A, B = IPv4Address("10.77.0.2"), IPv4Address("10.77.0.3")


@dataclass
class FakeTransport:
    buffered: int = 0
    writes: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered


@dataclass
class FakeSession:
    counters: Counters = field(default_factory=Counters)


@dataclass(eq=False)  # hashed by identity, like a ServerProtocol
class FakePeer:
    transport: FakeTransport | None = field(default_factory=FakeTransport)
    session: FakeSession = field(default_factory=FakeSession)


@pytest.fixture
def tun() -> Iterator[tuple[socket.socket, socket.socket]]:
    kernel, daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.setblocking(False)
    yield kernel, daemon
    kernel.close()
    daemon.close()


def packets_in(data: bytes) -> list[bytes]:
    reader = PacketReader()
    reader.feed(data)
    out = []
    while (got := reader.next_packet()) is not None:
        is_control, payload = got
        assert not is_control and payload[:4] == b"\xff\x03\x00\x21"
        out.append(payload[4:])
    return out


def test_read_batch_stops_at_the_batch_size_and_when_drained(
    tun: tuple[socket.socket, socket.socket],
) -> None:
    kernel, daemon = tun
    sent = [udp(SERVER, A, 1, 2, bytes([i]) * 10) for i in range(TUN_BATCH + 3)]
    for p in sent:
        kernel.send(p)
    assert read_batch(daemon.fileno()) == sent[:TUN_BATCH]
    assert read_batch(daemon.fileno()) == sent[TUN_BATCH:]
    assert read_batch(daemon.fileno()) == []


def test_pump_routes_by_destination_with_one_write_per_session(
    tun: tuple[socket.socket, socket.socket],
) -> None:
    kernel, daemon = tun
    a, b = FakePeer(), FakePeer()
    stats = Stats()
    pump = TunPump(daemon.fileno(), {A.packed: a, B.packed: b}, stats, lambda: 1 << 20)
    to_a = [udp(SERVER, A, 1, 2, b"a%d" % i) for i in range(3)]
    to_b = [udp(SERVER, B, 1, 2, b"b")]
    nowhere = udp(SERVER, IPv4Address("10.77.0.99"), 1, 2, b"x")
    for p in (to_a[0], to_b[0], nowhere, to_a[1], to_a[2]):
        kernel.send(p)
    pump.readable()
    assert a.transport is not None and b.transport is not None
    assert len(a.transport.writes) == 1 and len(b.transport.writes) == 1
    assert packets_in(a.transport.writes[0]) == to_a
    assert packets_in(b.transport.writes[0]) == to_b
    assert a.session.counters.tx_packets == 3
    assert a.session.counters.tx_bytes == sum(len(p) for p in to_a)
    assert stats.tun_no_route == 1


def test_pump_drops_a_batch_for_a_full_send_buffer(
    tun: tuple[socket.socket, socket.socket],
) -> None:
    kernel, daemon = tun
    full, gone = FakePeer(FakeTransport(buffered=5000)), FakePeer(None)
    pump = TunPump(daemon.fileno(), {A.packed: full, B.packed: gone}, Stats(), lambda: 4096)
    kernel.send(udp(SERVER, A, 1, 2, b"1"))
    kernel.send(udp(SERVER, A, 1, 2, b"2"))
    kernel.send(udp(SERVER, B, 1, 2, b"3"))
    pump.readable()
    assert full.transport is not None and full.transport.writes == []
    assert full.session.counters.dropped_overflow == 2 and full.session.counters.tx_packets == 0
    assert gone.session.counters.dropped_overflow == 1


def test_pump_write_counts_what_the_tun_refuses() -> None:
    stats = Stats()
    r, w = os.pipe()
    os.close(r)  # writing now fails (EPIPE; SIGPIPE is ignored by Python)
    try:
        TunPump(w, {}, stats, lambda: 0).write(b"E" * 20)
    finally:
        os.close(w)
    assert stats.tun_no_route == 1


@pytest.mark.parametrize("per_packet", [False, True])
def test_send_batch_one_write_or_one_per_packet(per_packet: bool) -> None:
    tr, c = FakeTransport(), Counters()
    pkts = [udp(SERVER, A, 1, 2, b"x" * n) for n in (1, 100, 1000)]
    send_batch(tr, c, pkts, record_per_packet=per_packet)  # type: ignore[arg-type]
    assert len(tr.writes) == (3 if per_packet else 1)
    assert packets_in(b"".join(tr.writes)) == pkts
    assert (c.tx_packets, c.tx_bytes) == (3, sum(len(p) for p in pkts))
