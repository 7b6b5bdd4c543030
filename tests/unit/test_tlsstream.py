"""``aio.tlsstream``: the daemon's own TLS transport, against a real TLS client (asyncio
streams over the event loop's SSL) on a real TCP connection, under uvloop (the daemon's
loop) and asyncio's loop. Data arrives intact both ways at every record shape; the
incoming BIO never holds more than one feed slice and a partial record; pausing stops the
socket being read and loses nothing; a peer that does not read pauses the writer and
resumes it; close sends close_notify; abort, EOF and bad records end the connection once."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import ssl
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from bench import tls_records
from sstpd.aio import tlshandshake, tlsstream

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
MAX_RECORD = 16384 + 256  # TLS 1.3 ciphertext of one full record, with room to spare
BIO_BOUND = 32 * 1024 + MAX_RECORD  # one feed slice and a partial record


class Sink(asyncio.BufferedProtocol):
    """Collects what arrives; records what the transport held at each delivery."""

    def __init__(self) -> None:
        self.buf = bytearray(65536)
        self.data = bytearray()
        self.transport: tlsstream.TlsTransport | None = None
        self.max_in_bio = 0
        self.lost: list[Exception | None] = []
        self.eofs = 0
        self.paused = self.resumed = 0
        self.arrived = asyncio.Event()
        self.on_data: Callable[[Sink], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        assert self.transport is not None
        self.max_in_bio = max(self.max_in_bio, self.transport._in.pending)
        self.data += self.buf[:nbytes]
        self.arrived.set()
        if self.on_data is not None:
            self.on_data(self)

    def eof_received(self) -> bool | None:
        self.eofs += 1
        return None

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


Body = Callable[[Sink, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(kind: str, tmp: Path, body: Body, sink: Sink | None = None) -> Sink:
    """A listening socket whose one connection goes through ``tlshandshake.handshake`` into a
    ``Sink``; ``body`` drives the client side."""
    sc, cc = tls_records.contexts(tmp)

    async def main() -> Sink:
        loop = asyncio.get_running_loop()
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        lsock.setblocking(False)
        proto = sink or Sink()

        async def serve() -> None:
            conn, _ = await loop.sock_accept(lsock)
            conn.setblocking(False)
            transport = await tlshandshake.handshake(loop, conn, sc)
            transport.start(proto)

        server = asyncio.ensure_future(serve())
        r, w = await asyncio.open_connection(*lsock.getsockname(), ssl=cc)
        await asyncio.wait_for(server, 5)
        await asyncio.wait_for(body(proto, r, w), 20)
        lsock.close()
        return proto

    loop = LOOPS[kind]()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def raw_socket(w: asyncio.StreamWriter) -> socket.socket:
    """The client's TCP socket itself (uvloop only lends a stand-in)."""
    return socket.socket(fileno=os.dup(w.get_extra_info("socket").fileno()))


async def until(what: Callable[[], bool]) -> None:
    while not what():
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("kind", LOOPS)
@pytest.mark.parametrize("record", [1, 1404, 16384, 100_000])
def test_data_both_ways_in_every_record_shape(kind: str, record: int, tmp_path: Path) -> None:
    up = os.urandom(300_000)
    down = os.urandom(300_000)

    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for off in range(0, len(up), record):  # one TLS record per write (or 16 KiB ones)
            w.write(up[off : off + record])
            if off % (record * 64) == 0:
                await w.drain()
        await w.drain()
        await until(lambda: len(sink.data) >= len(up))
        assert sink.transport is not None
        for off in range(0, len(down), record):
            sink.transport.write(down[off : off + record])
        assert await r.readexactly(len(down)) == down
        w.close()

    sink = run(kind, tmp_path, body)
    assert bytes(sink.data) == up
    assert sink.nodelay  # as the event loop's TCP transports: no Nagle delay on writes
    # whatever the socket reads at once, the BIO holds one slice and a partial record
    assert sink.max_in_bio <= BIO_BOUND


@pytest.mark.parametrize("kind", LOOPS)
def test_a_burst_read_at_once_is_fed_in_slices(kind: str, tmp_path: Path) -> None:
    """The client's 1 MB arrives while the server is not reading; then one readable event
    finds far more than a slice in the socket."""
    up = os.urandom(1_000_000)

    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        assert sink.transport is not None
        sink.transport.pause_reading()
        w.write(up)
        await asyncio.sleep(0.2)  # in the server's socket now, as far as its window goes
        sink.transport.resume_reading()
        await w.drain()
        await until(lambda: len(sink.data) >= len(up))
        w.close()

    sink = run(kind, tmp_path, body)
    assert bytes(sink.data) == up
    assert tlsstream.FEED_SIZE == 32 * 1024
    assert sink.max_in_bio <= BIO_BOUND


@pytest.mark.parametrize("kind", LOOPS)
def test_pausing_inside_a_delivery_loses_nothing(kind: str, tmp_path: Path) -> None:
    """The protocol pauses at every delivery (as ``hold_output`` does) and resumes a tick
    later: the rest of the socket read waits and comes next, in order."""
    up = os.urandom(400_000)
    pauses = []

    def pause(sink: Sink) -> None:
        assert sink.transport is not None
        sink.transport.pause_reading()
        assert not sink.transport.is_reading()
        pauses.append(len(sink.data))
        asyncio.get_running_loop().call_later(0.001, sink.transport.resume_reading)

    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        sink.on_data = pause
        w.write(up)
        await w.drain()
        await until(lambda: len(sink.data) >= len(up))
        w.close()

    sink = run(kind, tmp_path, body)
    assert bytes(sink.data) == up
    assert len(pauses) > 5


@pytest.mark.parametrize("kind", LOOPS)
def test_a_peer_that_does_not_read_pauses_the_writer(kind: str, tmp_path: Path) -> None:
    down = os.urandom(8_000_000)

    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr = sink.transport
        assert tr is not None
        tr.write(down)  # far more than the socket buffers take
        assert tr.get_write_buffer_size() > 0
        assert sink.paused == 1
        assert await r.readexactly(len(down)) == down
        await until(lambda: tr.get_write_buffer_size() == 0)
        assert sink.resumed == 1
        w.close()

    run(kind, tmp_path, body)


@pytest.mark.parametrize("kind", LOOPS)
def test_close_sends_close_notify_after_the_queued_data(kind: str, tmp_path: Path) -> None:
    down = os.urandom(3_000_000)

    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        assert sink.transport is not None
        sink.transport.write(down)
        sink.transport.close()
        assert sink.transport.is_closing()
        sink.transport.write(b"after close: dropped")
        assert await r.read() == down  # then a clean EOF: close_notify, not a reset
        await until(lambda: bool(sink.lost))
        w.close()

    sink = run(kind, tmp_path, body)
    assert sink.lost == [None]


@pytest.mark.parametrize("kind", LOOPS)
@pytest.mark.parametrize("who", ["server", "client"])
def test_a_closed_connection_is_not_kept_alive(kind: str, who: str, tmp_path: Path) -> None:
    """Nothing (a timer, the loop's reader) holds the transport, its SSL object and BIOs
    once the connection is lost: 1000 closed sessions must give their memory back."""
    refs: list[weakref.ref[tlsstream.TlsTransport]] = []

    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        assert sink.transport is not None
        refs.append(weakref.ref(sink.transport))
        sink.transport.write(b"bye")
        if who == "server":
            sink.transport.close()
            assert await r.read() == b"bye"
        else:
            assert await r.readexactly(3) == b"bye"
        w.close()
        await until(lambda: bool(sink.lost))
        await asyncio.sleep(0.01)
        sink.transport = None
        gc.collect()
        assert refs[0]() is None

    sink = run(kind, tmp_path, body)
    assert sink.lost == [None]


@pytest.mark.parametrize("kind", LOOPS)
def test_the_peer_closing_ends_the_connection_once(kind: str, tmp_path: Path) -> None:
    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"last words")
        await w.drain()
        w.close()  # close_notify, then FIN
        await until(lambda: bool(sink.lost))
        await asyncio.sleep(0.05)

    sink = run(kind, tmp_path, body)
    assert bytes(sink.data) == b"last words"
    assert sink.lost == [None]
    assert sink.eofs == 1
    assert sink.transport is not None and sink.transport.get_extra_info("socket").fileno() == -1


@pytest.mark.parametrize("kind", LOOPS)
def test_a_bare_fin_and_abort(kind: str, tmp_path: Path) -> None:
    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with raw_socket(w) as raw:
            raw.shutdown(socket.SHUT_WR)  # no close_notify
        await until(lambda: bool(sink.lost))
        assert sink.transport is not None
        sink.transport.abort()  # after the end: nothing happens twice
        await asyncio.sleep(0.05)
        w.close()

    sink = run(kind, tmp_path, body)
    assert sink.lost == [None]


@pytest.mark.parametrize("kind", LOOPS)
@pytest.mark.parametrize("how", ["server closes", "client half-closes"])
def test_a_peer_that_never_reads_cannot_hold_a_closing_connection(
    kind: str, how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With megabytes queued for a client that reads nothing, a closing connection ends
    after ``CLOSE_TIMEOUT`` (its socket and memory with it), whoever started the close."""
    monkeypatch.setattr(tlsstream, "CLOSE_TIMEOUT", 0.3)

    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr = sink.transport
        assert tr is not None
        tr.write(os.urandom(8_000_000))
        assert tr.get_write_buffer_size() > 0
        if how == "server closes":
            tr.close()
        else:
            with raw_socket(w) as raw:
                raw.shutdown(socket.SHUT_WR)  # a bare FIN, and it reads nothing
        await until(lambda: bool(sink.lost))
        assert tr.get_extra_info("socket").fileno() == -1
        w.transport.abort()

    sink = run(kind, tmp_path, body)
    assert sink.lost == [None]


@pytest.mark.parametrize("kind", LOOPS)
def test_a_forged_record_ends_the_connection_with_the_error(kind: str, tmp_path: Path) -> None:
    async def body(sink: Sink, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with raw_socket(w) as raw:
            raw.send(b"\x17\x03\x03\x00\x20" + os.urandom(32))  # application data, bad tag
        await until(lambda: bool(sink.lost))

    sink = run(kind, tmp_path, body)
    assert len(sink.lost) == 1 and isinstance(sink.lost[0], ssl.SSLError)
    assert sink.data == b""


@pytest.mark.parametrize(
    ("peer", "error"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ssl.SSLError),  # speaks no TLS
        (None, ConnectionResetError),  # leaves before its ClientHello
    ],
)
def test_a_handshake_that_fails_raises(
    peer: bytes | None, error: type[Exception], tmp_path: Path
) -> None:
    sc, _cc = tls_records.contexts(tmp_path)

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        if peer is None:
            b.close()
        else:
            b.sendall(peer)
        try:
            return await tlshandshake.handshake(loop, a, sc)
        finally:
            a.close()
            b.close()

    loop = uvloop.new_event_loop()
    try:
        with pytest.raises(error):
            loop.run_until_complete(main())
    finally:
        loop.close()
