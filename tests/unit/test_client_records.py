"""``record_per_packet``: what the client puts on the wire, counted in TLS records.

A real TLS connection over loopback: the package's client -> a TCP relay that parses the
TLS record headers flowing client -> server -> a small SSTP server (the sans-I/O
ServerSession behind the same ``SstpStreamProtocol`` the daemon uses, without a TUN: IP
packets arrive as events). After the tunnel is open, a batch of packets is sent; the relay
counts the TLS records it carried and the server checks every packet arrived intact.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from sstpd import certs
from sstpd.aio.client import ClientOptions, Tunnel, _parse_args
from sstpd.aio.protocol import SstpStreamProtocol
from sstpd.proto.mschap import nt_password_hash
from sstpd.proto.pool import AddressPool
from sstpd.proto.ppp.link import PppServerConfig
from sstpd.proto.session import Event, IpReceived, ServerSession
from sstpd.proto.sstp.binding import cert_hashes
from tests.integration.client_tool import udp

SERVER_TUNNEL_IP = IPv4Address("10.99.0.1")
TLS_HEADER = 5


class RecordCounter:
    """Splits a byte stream into TLS records (type, version, length) and counts them."""

    def __init__(self) -> None:
        self.buf = b""
        self.records: list[tuple[int, int]] = []  # (content type, length)

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= TLS_HEADER:
            length = int.from_bytes(self.buf[3:5], "big")
            if len(self.buf) < TLS_HEADER + length:
                break
            self.records.append((self.buf[0], length))
            self.buf = self.buf[TLS_HEADER + length :]


class MiniServer(SstpStreamProtocol):
    session: ServerSession

    def __init__(self, loop: asyncio.AbstractEventLoop, hashes: dict, got: asyncio.Queue) -> None:  # type: ignore[type-arg]
        super().__init__(loop, -1)
        pool = AddressPool(IPv4Network("10.99.0.0/24"), exclude=[SERVER_TUNNEL_IP])
        self.session = ServerSession(
            ppp_config=PppServerConfig(local_address=SERVER_TUNNEL_IP),
            cert_hashes=hashes,
            hash_protocols=3,
            lookup=lambda n: nt_password_hash("pw") if n == "alice" else None,
            assign_address=lambda n: pool.allocate(),
            random=os.urandom,
            now=loop.time(),
        )
        self.got = got
        self.on_event = self._on_event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, IpReceived):
            self.got.put_nowait(ev.packet)


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tap) -> None:  # type: ignore[no-untyped-def]
    try:
        while data := await reader.read(65536):
            if tap is not None:
                tap.feed(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _records_for_batch(tmp: Path, record_per_packet: bool, n: int) -> tuple[int, set[int]]:
    cert, key = tmp / "c.pem", tmp / "k.pem"
    certs.generate_self_signed(str(cert), str(key), common_name="127.0.0.1", sans=["127.0.0.1"])
    hashes = cert_hashes(certs.load_certificate_der(str(cert)))
    loop = asyncio.get_running_loop()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    got: asyncio.Queue[bytes] = asyncio.Queue()
    server = await loop.create_server(
        lambda: MiniServer(loop, hashes, got), "127.0.0.1", 0, ssl=ctx
    )
    srv_port = server.sockets[0].getsockname()[1]
    counter = RecordCounter()
    tasks: list[asyncio.Task[None]] = []

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", srv_port)
        tasks.append(asyncio.create_task(_relay(r, uw, counter)))
        tasks.append(asyncio.create_task(_relay(ur, w, None)))

    relay = await asyncio.start_server(on_client, "127.0.0.1", 0)
    relay_port = relay.sockets[0].getsockname()[1]
    t = await Tunnel.open(
        ClientOptions(
            host="127.0.0.1",
            port=relay_port,
            user="alice",
            password="pw",
            ca_file=str(cert),
            record_per_packet=record_per_packet,
            timeout=10,
        )
    )
    try:
        await asyncio.sleep(0.3)  # the handshake's last records have passed the relay
        before = len(counter.records)
        packets = [
            udp(t.local_address, t.peer_address, 40000, 9, bytes([i]) * (200 + i)) for i in range(n)
        ]
        t.proto.send_ip_batch(packets)
        received = [await asyncio.wait_for(got.get(), 5) for _ in range(n)]
        assert received == packets
        await asyncio.sleep(0.1)
        window = counter.records[before:]
        return len(window), {ctype for ctype, _ in window}
    finally:
        await t.close(timeout=2)
        relay.close()
        server.close()
        for task in tasks:
            task.cancel()


@pytest.mark.parametrize(("record_per_packet", "expected"), [(True, 10), (False, 1)])
def test_records_on_the_wire(tmp_path: Path, record_per_packet: bool, expected: int) -> None:
    records, types = asyncio.run(_records_for_batch(tmp_path, record_per_packet, 10))
    assert types == {23}  # application data
    assert records == expected


def test_command_line_flag() -> None:
    base = ["vpn.example.org", "--user", "u", "--password", "p"]
    assert _parse_args([*base, "--record-per-packet"]).record_per_packet is True
    assert _parse_args(base).record_per_packet is False
