"""Read moderation (``sstpd.aio.moderation``, ``[tunnel] read_moderation_bytes``).

Against a real kernel TCP connection on loopback, under the event loop the daemon uses
(uvloop when installed, else asyncio): engaging sets ``SO_RCVLOWAT`` on the connection's
socket (capped to a quarter of its receive buffer), the kernel then holds a short write
back until the moderator's one timer releases it, and a forgotten (closing) connection
is never touched. Through ``SstpStreamProtocol``: only a read that brought at least
``ENGAGE_BYTES`` of large tunnel packets engages; control traffic, single packets and a
pile of small ones (a download's ACKs) never do, and ``connection_lost`` forgets the
connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from sstpd.aio.moderation import ENGAGE_BYTES, ENGAGE_MEAN, ReadModerator, streaming
from tests.unit.test_rx_buffer import ECHO_REQUEST, Conn, stream_of

try:
    import uvloop  # type: ignore[import-not-found]

    new_loop: Any = uvloop.new_event_loop
except ImportError:  # the core install: plain asyncio
    new_loop = asyncio.new_event_loop


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[tuple[float, bytes]] = []
        self.got = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append((asyncio.get_running_loop().time(), data))
        self.got.set()


def lowat(proto: Sink) -> int:
    assert proto.transport is not None
    sock = proto.transport.get_extra_info("socket")
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))


async def connected() -> tuple[Sink, socket.socket, asyncio.AbstractServer]:
    loop = asyncio.get_running_loop()
    sink = Sink()
    server = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    for _ in range(200):
        if sink.transport is not None:
            break
        await asyncio.sleep(0.01)
    assert sink.transport is not None
    return sink, client, server


def run(coro: Any) -> Any:
    loop = new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_engage_sets_the_low_water_mark_and_the_tick_releases_it() -> None:
    async def main() -> None:
        sink, client, server = await connected()
        try:
            mod = ReadModerator(asyncio.get_running_loop(), 65536, 0.05)
            assert lowat(sink) == 1
            mod.engage(sink)
            assert mod.held == 1 and mod.engaged == 1
            rcvbuf = sink.transport.get_extra_info("socket").getsockopt(  # type: ignore[union-attr]
                socket.SOL_SOCKET, socket.SO_RCVBUF
            )
            assert lowat(sink) == min(65536, rcvbuf // 4) > 1
            mod.engage(sink)  # already held: nothing changes, no second timer
            assert mod.engaged == 1
            await asyncio.sleep(0.3)
            assert lowat(sink) == 1 and mod.held == 0
            mod.engage(sink)  # the next streaming read engages it again
            assert mod.engaged == 2 and lowat(sink) > 1
            mod.close()
            assert lowat(sink) == 1 and mod.held == 0
        finally:
            client.close()
            server.close()

    run(main())


def test_the_kernel_holds_a_short_write_until_the_release() -> None:
    delay = 0.4

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sink, client, server = await connected()
        try:
            mod = ReadModerator(loop, 65536, delay)
            mod.engage(sink)
            engaged_at = loop.time()
            client.sendall(b"x" * 100)  # far below the low-water mark
            await asyncio.wait_for(sink.got.wait(), 10)
            (at, data), *_ = sink.chunks
            assert data == b"x" * 100
            # not delivered before the moderator's timer put the mark back (the timer
            # cannot fire early; a loaded machine can only make it later)
            assert at - engaged_at >= delay * 0.9
        finally:
            client.close()
            server.close()

    run(main())


def test_a_forgotten_connection_is_not_touched_and_zero_is_off() -> None:
    async def main() -> None:
        sink, client, server = await connected()
        try:
            mod = ReadModerator(asyncio.get_running_loop(), 65536, 0.05)
            mod.engage(sink)
            mod.forget(sink)  # closing: the fd may be reused by the time the tick fires
            await asyncio.sleep(0.2)
            assert lowat(sink) > 1  # the tick left it alone
            off = ReadModerator(asyncio.get_running_loop(), 0, 0.05)
            off.engage(sink)
            assert off.held == 0 and off.engaged == 0
            off.configure(32768, 0.05)  # a reload turns it on
            off.engage(sink)
            assert off.engaged == 1
            off.close()
            assert lowat(sink) == 1
        finally:
            client.close()
            server.close()

    run(main())


class Recorder:
    def __init__(self) -> None:
        self.engaged: list[object] = []
        self.forgotten: list[object] = []

    def engage(self, conn: object) -> None:
        self.engaged.append(conn)

    def forget(self, conn: object) -> None:
        self.forgotten.append(conn)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "slow-path"])
def test_only_a_streaming_read_engages(loop: asyncio.AbstractEventLoop, fast: bool) -> None:
    c = Conn(loop, fast, 1)
    rec = Recorder()
    c.proto.moderator = rec  # type: ignore[assignment]
    try:
        one = [c.packet(0, 1400)]
        c.feed(stream_of(one))  # a single packet: interactive traffic
        c.feed(ECHO_REQUEST * 50)  # control packets only
        acks = [c.packet(100 + i, 60) for i in range(ENGAGE_BYTES // 60 + 10)]
        c.feed(stream_of(acks))  # more than ENGAGE_BYTES, but in ACK-sized packets
        assert rec.engaged == []
        assert len(c.delivered()) == 1 + len(acks)
        n = ENGAGE_BYTES // 1400 + 1
        burst = [c.packet(i, 1400) for i in range(n)]
        c.feed(stream_of(burst))
        if fast:
            assert rec.engaged == [c.proto]  # the fast path counted them: it streams
        else:
            # the slow path (no TUN fd: the session gets them) is not a streaming path
            assert rec.engaged == []
        assert c.delivered() == burst
        c.proto.connection_lost(None)
        assert rec.forgotten == [c.proto]
    finally:
        c.close()


def test_streaming_needs_enough_bytes_in_large_packets() -> None:
    assert not streaming(ENGAGE_BYTES - 1, 1)
    assert streaming(ENGAGE_BYTES, 3)
    assert streaming(3 * 1400, 3)
    assert not streaming(100 * 60, 100)  # a pile of ACKs
    assert streaming(ENGAGE_MEAN * 20, 20) and not streaming(ENGAGE_MEAN * 20 - 1, 20)
