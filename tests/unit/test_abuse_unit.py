"""Issue 11 in memory: pool accounting across renegotiation, the version nibble, reject
sizes and the I/O layer's guard against unexpected exceptions in one session."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from sstpd.aio.protocol import SstpStreamProtocol
from sstpd.proto.ppp.link import MAX_CARRIED_PACKET
from sstpd.proto.session import AuthSucceeded, IpReceived
from tests.integration.client_tool import udp
from tests.unit.test_session import SERVER_IP, Pair


def test_address_is_held_from_authentication_on() -> None:
    p = Pair()
    # stop right after authentication: feed the client's bytes until the server reports it
    for _ in range(30):
        p.server.receive_data(p.client.data_to_send(), 0.0)
        p.server_events += p.server.pop_events()
        if any(isinstance(e, AuthSucceeded) for e in p.server_events):
            break
        p.client.receive_data(p.server.data_to_send(), 0.0)
        p.client_events += p.client.pop_events()
    assert any(isinstance(e, AuthSucceeded) for e in p.server_events)
    assert p.server.peer_address is None  # IPCP is not up ...
    assert p.server.allocated_address is not None  # ... but the address is taken
    assert p.pool.in_use == 1


def test_lcp_renegotiation_reauthenticates_with_the_same_address() -> None:
    p = Pair()
    p.run()
    first = p.server.allocated_address
    assert first is not None and p.pool.in_use == 1
    for _ in range(5):
        link = p.client.link
        link.lcp.down(0.0)
        link.lcp.up(0.0)
        p.client._pump(0.0)
        p.run(60)
        assert p.client.link.is_network_up
        assert p.server.allocated_address == first == p.client.local_address
    assert sum(isinstance(e, AuthSucceeded) for e in p.server_events) == 6
    assert p.pool.in_use == 1


def test_ipv6_in_an_ipv4_frame_fails_the_source_check() -> None:
    p = Pair()
    p.run()
    me = p.client.local_address
    assert me is not None
    v4 = udp(me, SERVER_IP, 1, 2, b"legit")
    v6 = bytes([0x60]) + v4[1:]  # same bytes 12..16 (the client's address), version 6
    assert not p.server.check_ip_source(v6)
    assert p.server.check_ip_source(v4)
    p.client._conn.send_ppp(b"\x00\x21" + v6)
    p.client.send_ip(v4)
    p.run()
    got = [e.packet for e in p.server_events if isinstance(e, IpReceived)]
    assert got == [v4]
    assert p.server.counters.dropped_spoofed == 1


def test_protocol_reject_of_a_huge_frame_fits_one_sstp_packet() -> None:
    p = Pair()
    p.run()
    link = p.server.link
    link.lcp_handler.peer_mru = 65535
    link.lcp.peer_mru = link.send_limit
    link.receive_frame(b"\xff\x03\x80\x57" + b"\xbb" * 4087, 0.0)
    p.server._pump(0.0)
    data = p.server.data_to_send()  # raised ValueError before the cap
    length = struct.unpack("!H", data[2:4])[0] & 0x0FFF
    assert length == len(data) <= 4095
    assert len(data) - 8 == MAX_CARRIED_PACKET


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


def test_unexpected_exception_ends_only_that_session_with_a_call_abort() -> None:
    loop = asyncio.new_event_loop()
    try:
        p = Pair()
        p.run()
        assert p.server.is_open
        proto = SstpStreamProtocol(loop, -1)
        proto.session = p.server
        proto.on_event = lambda ev: None
        tr = _Transport()
        proto.transport = tr

        def boom(*a: object) -> None:
            raise KeyError("bug")

        p.server.receive_packet = boom  # type: ignore[method-assign]
        # one SSTP control packet (Echo Request) reaches receive_packet
        buf = proto.get_buffer(-1)
        pkt = bytes.fromhex("10010008") + b"\x00\x08\x00\x00"
        buf[: len(pkt)] = pkt
        proto.buffer_updated(len(pkt))  # must not raise
        assert proto.internal_errors == 1
        assert tr.closed
        assert tr.written[:2] == b"\x10\x01" and tr.written[4:6] == b"\x00\x05"  # Call Abort
        proto.connection_lost(None)
        assert p.server.closed
    finally:
        loop.close()


def test_accept_failures_log_one_line_per_interval(caplog: Any) -> None:
    import errno
    import logging

    from sstpd.aio.listener import LOG_INTERVAL, Listener

    class Gate:
        setup_timeout = 1.0

    async def main() -> None:
        lst = Listener("127.0.0.1", 0, lambda *a: None, None, Gate())  # type: ignore[arg-type, return-value]
        try:
            exc = OSError(errno.EMFILE, "Too many open files")
            with caplog.at_level(logging.WARNING, logger="sstpd"):
                for _ in range(10_000):
                    lst._accept_failed(exc)
                lines = [r.getMessage() for r in caplog.records]
                assert lines == ["accept failed: Too many open files; not accepting for 0.5 s"]
                lst._last_log -= LOG_INTERVAL  # the next interval
                lst._accept_failed(exc)
                assert caplog.records[-1].getMessage().endswith(
                    "(9999 more since the last report)"
                )
            assert lst.accept_errors == 10_001
        finally:
            lst.close()

    asyncio.run(main())
