"""The daemon's own TLS transport: an ``ssl.SSLObject`` between two memory BIOs whose
size sstpd bounds, over a non-blocking TCP socket.

Why not the event loop's SSL transport (uvloop's, asyncio's): they write each TCP read,
up to 256 KiB, into the incoming memory BIO in one piece, and a whole ``write`` into the
outgoing one, and OpenSSL's memory BIO never shrinks (``BUF_MEM_grow_clean``). uvloop also
gives every connection its own 256 KiB read buffer. So a session that once carried a burst
kept about 257 KiB until it closed (docs/PERFORMANCE-NOTES.md, "Memory per idle session").
Here:

* one read buffer per thread (``aio.buffers.read_buffer``), shared by all connections, as
  the SSTP layer's is: a socket read lands there and is fed to the incoming BIO in slices of
  ``FEED_SIZE``, each decrypted before the next, so the incoming BIO never holds more than
  one slice (a slice that ends inside a record costs one ``SSLWantReadError``, about
  1.7 µs: 16 KiB slices made 16 KB records 19 % dearer than uvloop's, 32 KiB ones cost
  the same, bench/tls_transport.py);
* a ``write`` is encrypted in slices of one TLS record's worth (``RECORD_SIZE``, the same
  records OpenSSL would cut) and each slice's ciphertext leaves the outgoing BIO at once;
  the slices go to the socket in one ``sendmsg``; what the socket does not take waits in a
  list of bytes objects, freed as it drains (``get_write_buffer_size``, flow control);
* a connection that pauses reading stops reading its socket (TCP applies the
  back-pressure); the rest of the last read waits as a bytes object of its own.

Per record it does what uvloop's ``_do_read__buffered`` does (``SSLObject.read`` into the
protocol's buffer until the BIO is empty), in a Python loop instead of Cython's.
``aio.tlshandshake.handshake`` is the server side's TLS handshake that makes one. The
client side (``sstpd connect``) keeps the event loop's transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from sstpd.aio.buffers import READ_SIZE
from sstpd.aio.buffers import read_buffer as _read_buffer

log = logging.getLogger("sstpd")

FEED_SIZE = 32 * 1024  # ciphertext written to the incoming BIO at a time
RECORD_SIZE = 16 * 1024  # plaintext encrypted at a time: one full TLS record
HIGH_WATER = 64 * 1024  # unsent ciphertext above which the protocol is paused
CLOSE_TIMEOUT = 30.0  # seconds a closing connection may take to send what it queued


class TlsTransport(asyncio.Transport):
    """One server-side TLS connection after its handshake (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        sslobj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._ssl = sslobj
        self._in = incoming
        self._out = outgoing
        self._protocol: asyncio.BufferedProtocol | None = None
        self._extra = {"socket": sock, "ssl_object": sslobj, "sslcontext": sslobj.context}
        with contextlib.suppress(OSError):
            self._extra["peername"] = sock.getpeername()
            self._extra["sockname"] = sock.getsockname()
        self._reading = False  # the socket's reader is registered
        self._paused = False  # the protocol paused reading
        self._rest = b""  # ciphertext read but not fed while paused
        self._backlog: list[bytes] = []  # ciphertext the socket did not take yet
        self._backlog_size = 0
        self._high, self._low = HIGH_WATER, HIGH_WATER // 4
        self._writing_paused = False  # the protocol was told pause_writing
        self._closing = False
        self._close_timer: asyncio.TimerHandle | None = None  # close(): CLOSE_TIMEOUT
        self._lost = False

    # ------------------------------------------------------------ start
    def start(self, protocol: asyncio.BufferedProtocol) -> None:
        """Hand the connection to ``protocol``: ``connection_made``, then whatever arrived
        with the handshake's last flight, then reading."""
        self._protocol = protocol
        protocol.connection_made(self)
        if self._closing:
            return
        self._decrypt()
        if not self._closing and not self._paused:
            self._add_reader()

    # ------------------------------------------------------------ asyncio.Transport
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "cipher":
            return self._ssl.cipher()
        if name == "peercert":
            return self._ssl.getpeercert()
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._remove_reader()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self._closing or self._paused:
            return
        rest, self._rest = self._rest, b""
        if rest:
            self._feed(memoryview(rest), len(rest))
        else:
            self._decrypt()
        if not self._closing and not self._paused:
            self._add_reader()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = HIGH_WATER if high is None else high
        self._low = self._high // 4 if low is None else low
        self._check_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        return self._backlog_size

    def can_write_eof(self) -> bool:
        return False

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        if self._closing or not data:
            return
        sslobj, out = self._ssl, self._out
        try:
            if len(data) <= RECORD_SIZE:
                sslobj.write(data)
                chunks = [out.read()]
            else:
                view = memoryview(data)
                chunks = []
                for off in range(0, len(view), RECORD_SIZE):
                    sslobj.write(view[off : off + RECORD_SIZE])
                    chunks.append(out.read())
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        self._send(chunks)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        """Send what is queued and close_notify, then wait (``CLOSE_TIMEOUT`` at most) for
        the peer's close_notify or FIN before closing the socket: a peer whose TLS layer
        still holds unread data drops it when TCP closes under it (uvloop's does)."""
        if self._closing:
            return
        self._closing = True
        self._remove_reader()
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._ssl.unwrap()
        if self._out.pending:
            self._send([self._out.read()])
        if not self._lost:
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self.abort)
            if not self._backlog:
                self._await_peer()

    def _await_peer(self) -> None:
        """Everything is sent: read and discard until the peer's close_notify or FIN."""
        if not self._lost:
            self._loop.add_reader(self._fd, self._closing_readable)
            self._reading = True

    def _closing_readable(self) -> None:
        view = _read_buffer()
        try:
            n = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if n:
            self._in.write(view[:n])
            try:
                while self._ssl.read(READ_SIZE):
                    pass  # application data after our close_notify: discarded
            except ssl.SSLWantReadError:
                return
            except ssl.SSLError:
                pass
        self._finish(None)  # FIN, close_notify (read gave b""), or a TLS error

    def abort(self) -> None:
        self._closing = True
        self._backlog.clear()
        self._backlog_size = 0
        self._finish(None)

    # ------------------------------------------------------------ reading
    def _add_reader(self) -> None:
        if not self._reading:
            self._loop.add_reader(self._fd, self._readable)
            self._reading = True

    def _remove_reader(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _readable(self) -> None:
        view = _read_buffer()
        try:
            n = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if n == 0:  # the peer closed TCP without close_notify
            self._eof(raw=True)
            return
        self._feed(view, n)

    def _feed(self, view: memoryview, n: int) -> None:
        """``view[:n]`` (ciphertext) to the protocol, one ``FEED_SIZE`` slice at a time."""
        write = self._in.write
        for off in range(0, n, FEED_SIZE):
            write(view[off : min(off + FEED_SIZE, n)])
            self._decrypt()
            if self._paused or self._closing:
                if not self._closing and off + FEED_SIZE < n:
                    self._rest = bytes(view[off + FEED_SIZE : n])
                return

    def _decrypt(self) -> None:
        """Everything the incoming BIO holds, into the protocol's buffers."""
        proto, incoming = self._protocol, self._in
        assert proto is not None
        read: Callable[[int, memoryview], int] = self._ssl.read  # type: ignore[assignment]
        try:
            while not self._paused and not self._closing:
                if not incoming.pending and not self._ssl.pending():
                    break
                buf: memoryview = proto.get_buffer(-1)  # type: ignore[assignment]
                size = len(buf)
                got = n = read(size, buf)
                if n == 0:  # close_notify
                    self._eof()
                    return
                try:
                    while got < size:
                        n = read(size - got, buf[got:])
                        if n == 0:
                            break
                        got += n
                finally:
                    proto.buffer_updated(got)
                if n == 0:
                    self._eof()
                    return
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        if self._out.pending and not self._closing:  # post-handshake messages
            self._send([self._out.read()])

    def _eof(self, raw: bool = False) -> None:
        """The peer is done: its close_notify (answered with ours), or a bare TCP FIN
        (nothing more is sent but what is queued; TLS cannot half-close)."""
        if self._closing:
            return
        if self._protocol is not None and self._protocol.eof_received() and not raw:
            return  # the protocol keeps the connection open to write (not sstpd's)
        if not raw:
            self.close()
            return
        self._closing = True
        self._remove_reader()
        if not self._backlog:
            self._finish(None)
        else:  # what is queued still goes out, if the peer reads within CLOSE_TIMEOUT
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self.abort)

    # ------------------------------------------------------------ writing
    def _send(self, chunks: list[bytes]) -> None:
        if self._backlog:
            self._backlog.extend(chunks)
            self._backlog_size += sum(len(c) for c in chunks)
            self._check_writing()
            return
        try:
            sent = self._sock.sendmsg(chunks) if len(chunks) > 1 else self._sock.send(chunks[0])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._fatal(exc)
            return
        for c in chunks:
            if sent >= len(c):
                sent -= len(c)
                continue
            rest = c[sent:] if sent else c
            sent = 0
            self._backlog.append(rest)
            self._backlog_size += len(rest)
        if self._backlog:
            self._loop.add_writer(self._fd, self._writable)
            self._check_writing()

    def _writable(self) -> None:
        backlog = self._backlog
        try:
            sent = self._sock.sendmsg(backlog[:64])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        self._backlog_size -= sent
        while backlog and sent >= len(backlog[0]):
            sent -= len(backlog.pop(0))
        if sent:
            backlog[0] = backlog[0][sent:]
        if not backlog:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._await_peer()
                return
        self._check_writing()

    def _check_writing(self) -> None:
        proto = self._protocol
        if proto is None:
            return
        size = self._backlog_size
        if not self._writing_paused and size > self._high:
            self._writing_paused = True
            proto.pause_writing()
        elif self._writing_paused and size <= self._low:
            self._writing_paused = False
            proto.resume_writing()

    # ------------------------------------------------------------ the end
    def _fatal(self, exc: Exception) -> None:
        log.debug("TLS connection %s: %s", self._extra.get("peername"), exc)
        self._closing = True
        self._backlog.clear()
        self._backlog_size = 0
        self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if self._close_timer is not None:  # it would keep this transport for its 30 s
            self._close_timer.cancel()
            self._close_timer = None
        self._remove_reader()
        self._loop.remove_writer(self._fd)
        self._rest = b""
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        try:
            if self._protocol is not None:
                self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._protocol = None
