"""The shared receive buffer of ``SstpStreamProtocol`` (issue 15, memory per session).

All connections of a thread read into one buffer; a partial SSTP packet at the end of a
read is kept by its connection and put back in front of its next read. These tests feed
real SSTP streams of an open ServerSession through ``get_buffer``/``buffer_updated`` the way
asyncio and uvloop call them, cut at every byte boundary and at random (hypothesis), with
several connections interleaved, and check that every IPv4 packet comes out intact, once,
in order, on the right connection: through the fast path (``os.write`` to a datagram
socket standing in for the TUN device, one datagram per packet) and through the slow path
(``IpReceived`` events).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sstpd.aio import protocol
from sstpd.aio.protocol import SstpStreamProtocol
from sstpd.proto.datapath import encode_ip_packet
from sstpd.proto.ppp.link import MAX_CARRIED_PACKET
from sstpd.proto.session import Event, IpReceived
from tests.integration.client_tool import udp
from tests.unit.test_session import SERVER_IP, Pair

ECHO_REQUEST = bytes.fromhex("10010008") + b"\x00\x08\x00\x00"  # SSTP control packet
ECHO_RESPONSE_TYPE = b"\x00\x09"
UDP_IP_OVERHEAD = 28


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Conn:
    """One server connection with an open session, fed like a transport feeds it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fast: bool, tag: int) -> None:
        self.pair = Pair()
        self.pair.run()
        assert self.pair.server.is_open
        self.me = self.pair.client.local_address
        assert self.me is not None
        self.tun_r: socket.socket | None = None
        self.tun_w: socket.socket | None = None
        fd = -1
        if fast:  # a datagram socket keeps packet boundaries, as the TUN device does
            self.tun_r, self.tun_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.tun_w.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            self.tun_r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.tun_r.setblocking(False)
            fd = self.tun_w.fileno()
        self.proto = SstpStreamProtocol(loop, fd)
        self.proto.session = self.pair.server
        self.events: list[Event] = []
        self.proto.on_event = self.events.append
        self.transport = _Transport()
        self.proto.transport = self.transport
        self.tag = tag

    def packet(self, i: int, size: int) -> bytes:
        """IPv4 packet number ``i`` of this connection, ``size`` bytes of IP in all."""
        payload = bytes([self.tag, i & 0xFF]) + bytes(
            (self.tag + i + k) & 0xFF for k in range(size - UDP_IP_OVERHEAD - 2)
        )
        return udp(self.me, SERVER_IP, 40000 + self.tag, 9, payload)  # type: ignore[arg-type]

    def feed(self, data: bytes) -> None:
        """One or more reads of ``data``: as much as each lent buffer holds."""
        while data:
            buf = self.proto.get_buffer(-1)
            assert len(buf) > 0
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            self.proto.buffer_updated(n)
            data = data[n:]

    def delivered(self) -> list[bytes]:
        """The packets delivered since the last call, in order."""
        out = [bytes(ev.packet) for ev in self.events if isinstance(ev, IpReceived)]
        self.events.clear()
        if self.tun_r is not None:
            with contextlib.suppress(BlockingIOError):
                while True:
                    out.append(self.tun_r.recv(65536))
        return out

    def close(self) -> None:
        for s in (self.tun_r, self.tun_w):
            if s is not None:
                s.close()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def stream_of(packets: list[bytes], echo_after: int | None = None) -> bytes:
    frames = [encode_ip_packet(p) for p in packets]
    if echo_after is not None:
        frames.insert(echo_after, ECHO_REQUEST)
    return b"".join(frames)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "slow-path"])
def test_split_at_every_byte_boundary(loop: asyncio.AbstractEventLoop, fast: bool) -> None:
    c = Conn(loop, fast, 1)
    try:
        packets = [c.packet(0, 60), c.packet(1, 300), c.packet(2, 41)]
        data = stream_of(packets, echo_after=1)
        rounds = 0
        for cut in range(1, len(data)):
            c.feed(data[:cut])
            assert len(c.proto._rest) < 4096  # never more than one partial packet
            c.feed(data[cut:])
            assert c.proto._rest == b""
            assert c.delivered() == packets, f"cut at byte {cut}"
            rounds += 1
        # the Echo Request in the middle was answered once per round
        assert c.transport.written.count(b"\x10\x01\x00\x08" + ECHO_RESPONSE_TYPE) == rounds
        assert c.pair.server.is_open and not c.transport.closed
        assert c.proto.internal_errors == 0
    finally:
        c.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "slow-path"])
def test_one_byte_per_read_and_everything_in_one_read(
    loop: asyncio.AbstractEventLoop, fast: bool
) -> None:
    c = Conn(loop, fast, 2)
    try:
        packets = [c.packet(i, 28 + 2 + (i * 37) % 500) for i in range(40)]
        data = stream_of(packets)
        for k in range(len(data)):
            c.feed(data[k : k + 1])
        assert c.delivered() == packets
        c.feed(data)  # 40 packets in one read
        assert c.delivered() == packets
        assert c.pair.server.counters.rx_packets == 80
    finally:
        c.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "slow-path"])
def test_maximum_size_packet(loop: asyncio.AbstractEventLoop, fast: bool) -> None:
    c = Conn(loop, fast, 3)
    try:
        big = c.packet(0, MAX_CARRIED_PACKET)
        frame = encode_ip_packet(big)
        assert len(frame) == 4095  # the largest length the SSTP header can carry
        packets = [big, c.packet(1, 100), big]
        data = stream_of(packets)
        for cut in (1, 3, 4, 5, 4094, 4095, 4096, len(data) - 1):
            c.feed(data[:cut])
            c.feed(data[cut:])
            assert c.delivered() == packets, f"cut at byte {cut}"
        # a read that ends one byte short of a maximum-size packet keeps 4094 bytes
        c.feed(frame[:-1])
        assert len(c.proto._rest) == 4094
        c.feed(frame[-1:])
        assert c.proto._rest == b"" and c.delivered() == [big]
    finally:
        c.close()


def test_more_than_one_buffer_in_a_row(loop: asyncio.AbstractEventLoop) -> None:
    """A burst larger than the shared buffer: several full reads, tails carried over."""
    c = Conn(loop, True, 4)
    try:
        packets = [c.packet(i, 1400) for i in range(3 * protocol.BUFFER_SIZE // 1400)]
        c.feed(stream_of(packets))
        assert c.delivered() == packets
    finally:
        c.close()


def test_connections_share_one_buffer_and_idle_ones_hold_none(
    loop: asyncio.AbstractEventLoop,
) -> None:
    a, b = Conn(loop, True, 5), Conn(loop, True, 6)
    try:
        assert a.proto._rx is b.proto._rx is protocol.shared_buffer()
        a.feed(stream_of([a.packet(0, 200)]))
        assert a.proto._rest == b"" and a.proto._lent is None
        assert not any(isinstance(v, bytearray) for v in vars(a.proto).values())
    finally:
        a.close()
        b.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes_a=st.lists(st.integers(UDP_IP_OVERHEAD + 2, MAX_CARRIED_PACKET), min_size=1, max_size=8),
    sizes_b=st.lists(st.integers(UDP_IP_OVERHEAD + 2, MAX_CARRIED_PACKET), min_size=1, max_size=8),
    fast=st.booleans(),
    data=st.data(),
)
def test_two_connections_interleaved_at_random_cuts(
    sizes_a: list[int], sizes_b: list[int], fast: bool, data: st.DataObject
) -> None:
    loop = asyncio.new_event_loop()
    a, b = Conn(loop, fast, 7), Conn(loop, not fast, 8)
    try:
        pa = [a.packet(i, n) for i, n in enumerate(sizes_a)]
        pb = [b.packet(i, n) for i, n in enumerate(sizes_b)]
        streams = {
            a: stream_of(pa, echo_after=data.draw(st.integers(0, len(pa)))),
            b: stream_of(pb),
        }
        while streams:
            c = data.draw(st.sampled_from(sorted(streams, key=lambda x: x.tag)))
            rest = streams[c]
            n = data.draw(st.integers(1, len(rest)))
            c.feed(rest[:n])
            if n == len(rest):
                del streams[c]
            else:
                streams[c] = rest[n:]
        assert a.delivered() == pa
        assert b.delivered() == pb
        assert a.proto._rest == b.proto._rest == b""
        assert a.transport.written.count(ECHO_RESPONSE_TYPE) >= 1
        assert a.proto.internal_errors == b.proto.internal_errors == 0
    finally:
        a.close()
        b.close()
        loop.close()


def test_a_read_started_inside_another_connections_read(loop: asyncio.AbstractEventLoop) -> None:
    """Neither asyncio nor uvloop does it, but if a read on B began while A's data is being
    consumed, B gets a buffer of its own and A's data is not overwritten."""
    a, b = Conn(loop, False, 9), Conn(loop, False, 10)
    try:
        pa = [a.packet(i, 500) for i in range(4)]
        pb = [b.packet(i, 300) for i in range(3)]
        sb = stream_of(pb)
        b.feed(sb[:100])  # B holds a partial packet
        nested: list[bool] = []

        def on_event_a(ev: Event) -> None:
            a.events.append(ev)
            if not nested:
                nested.append(a.proto._rx.busy)
                b.feed(sb[100:])

        a.proto.on_event = on_event_a
        a.feed(stream_of(pa))
        assert nested == [True]
        assert a.delivered() == pa and b.delivered() == pb
    finally:
        a.close()
        b.close()


def test_buffer_updated_without_get_buffer_aborts_only_that_session(
    loop: asyncio.AbstractEventLoop,
) -> None:
    a, b = Conn(loop, True, 11), Conn(loop, True, 12)
    try:
        buf = a.proto.get_buffer(-1)
        b.proto.get_buffer(-1)  # the shared buffer is now lent to B
        frame = encode_ip_packet(a.packet(0, 100))
        buf[: len(frame)] = frame
        a.proto.buffer_updated(len(frame))  # A's bytes may have been overwritten: refused
        assert a.proto.internal_errors == 1 and a.transport.closed
        assert a.delivered() == []
        b.feed(stream_of([b.packet(0, 100)]))  # B is unaffected
        assert b.delivered() == [b.packet(0, 100)] and b.proto.internal_errors == 0
    finally:
        a.close()
        b.close()


def test_http_phase_goes_through_the_shared_buffer(loop: asyncio.AbstractEventLoop) -> None:
    """Before the HTTP upgrade, each read is handed on as bytes and nothing stays behind."""
    p = Pair()
    proto = SstpStreamProtocol(loop, -1)
    proto.session = p.server
    proto.on_event = lambda ev: None
    tr = _Transport()
    proto.transport = tr
    request = p.client.data_to_send()  # the HTTP request and the Call Connect Request
    assert request.startswith(b"SSTP_DUPLEX_POST")
    for k in range(0, len(request), 7):
        buf = proto.get_buffer(-1)
        chunk = request[k : k + 7]
        buf[: len(chunk)] = chunk
        proto.buffer_updated(len(chunk))
        assert proto._rest == b""
    assert p.server.http_done
    assert tr.written.startswith(b"HTTP/1.1 200")
    assert proto.internal_errors == 0


def test_a_closed_connection_is_not_kept_alive_by_the_shared_buffer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """EOF: the transport asked for a buffer, read 0 bytes and never called
    buffer_updated; connection_lost must drop the loan (and the partial packet)."""
    c = Conn(loop, True, 13)
    try:
        c.feed(stream_of([c.packet(0, 300)])[:100])
        assert c.proto._rest
        c.proto.get_buffer(-1)
        assert c.proto._rx.owner is c.proto
        c.proto.connection_lost(None)
        assert c.proto._rx.owner is None and c.proto._lent is None and c.proto._rest == b""
    finally:
        c.close()
