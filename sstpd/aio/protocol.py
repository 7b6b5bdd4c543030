"""asyncio adapter for one SSTP connection (server or client side).

The data path follows docs/PERFORMANCE-NOTES.md: a ``BufferedProtocol`` reads into one fixed
buffer, SSTP packets are framed in place, and IPv4 data packets of an open session go to
the TUN fd with a single ``os.write`` of a memoryview slice, without creating any Python
object per packet beyond the slice. Every other packet is copied out and handed to the
sans-I/O session (``sstpd.proto.session``), whose output is written after the batch.
The header layout, the PPP prefix and the offsets are ``sstpd.proto.datapath``'s; the
loop binds them to locals and compares bytes by index (a struct or ``startswith`` call
per packet costs 40-100 ns here, measured), the slow path decodes the same bytes.
DHCP (UDP to port 67 on the server, 68 on the client) passes the source check but is
the session's (issue 12): it takes the slow path too; the cost for other traffic is
one byte compare (IP protocol 17).
IPv6 (``FF 03 00 57``) takes the same shortcut on a server session whose IPv6 is open,
when ``forwardable6`` says the packet goes to the TUN (source in the session's /64, not
link-scoped, not Neighbor Discovery: the classifier's slice compare and byte checks);
everything else IPv6 goes through the session, which answers or drops and counts it.

The receive buffer is shared: one per thread (so one per event loop, ``aio.buffers``),
lent to whichever connection is reading. asyncio and uvloop call ``get_buffer`` and
then ``buffer_updated`` of the same protocol synchronously, one read at a time, and
``buffer_updated`` consumes every complete SSTP packet before it returns; only a trailing
partial packet (< 4 KiB) is copied out into the connection's ``_rest`` and copied back in
front of its next read. An idle session therefore holds no receive buffer at all (it held
64 KiB of resident memory before: docs/PERFORMANCE-NOTES.md, "Memory per idle session").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from sstpd.aio.buffers import BUFFER_SIZE, RxBuffer, shared_buffer
from sstpd.aio.moderation import ReadModerator, streaming
from sstpd.aio.tun import write_batch
from sstpd.proto.datapath import (
    HEADER_SIZE,
    IPV4_MIN_FAST,
    IPV4_SOURCE,
    IPV6_MIN_FAST,
    LENGTH_MASK,
    PPP_HEADER,
    SSTP_VERSION,
    Family,
)
from sstpd.proto.dhcp import is_dhcp_request
from sstpd.proto.gro import PLAIN
from sstpd.proto.session import ClientSession, Event, ServerSession
from sstpd.proto.sstp.constants import Status

log = logging.getLogger("sstpd.session")

_PPP_IPV4 = PPP_HEADER[Family.IPV4]
_PPP_IPV6 = PPP_HEADER[Family.IPV6]


class SstpStreamProtocol(asyncio.BufferedProtocol):
    """Frames SSTP in place and feeds a ServerSession/ClientSession.

    ``ip_fd`` is the TUN fd IPv4 packets from the peer are written to (-1: hand them to
    ``on_event`` as IpReceived instead). With ``vnet_hdr`` (the TUN device was opened with
    offload) the packets of one read are collected and written by ``tun.write_batch``,
    which coalesces TCP segments; every check before a packet is accepted is the same.
    Subclasses react to session events.
    """

    session: ServerSession | ClientSession
    #: read moderation for this connection (``sstpd.aio.moderation``); None: off
    moderator: ReadModerator | None = None
    #: which UDP packets from the peer are the session's own DHCP (the server's view)
    is_dhcp: Callable[[bytes | memoryview], bool] = staticmethod(is_dhcp_request)

    def __init__(
        self, loop: asyncio.AbstractEventLoop, ip_fd: int, vnet_hdr: bool = False
    ) -> None:
        self.loop = loop
        self.ip_fd = ip_fd
        self.vnet_hdr = vnet_hdr
        self.transport: asyncio.Transport | None = None
        self._rx = shared_buffer()
        self._lent: RxBuffer | None = None  # from get_buffer to buffer_updated
        self._rest = b""  # a partial SSTP packet at the end of the last read
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.tun_errors = 0
        self.internal_errors = 0
        self._held: list[bytes] | None = None  # output held back by hold_output
        self._hold_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ asyncio callbacks
    def get_buffer(self, sizehint: int) -> memoryview:
        rx = self._rx
        if rx.busy:
            # a read started from inside another connection's buffer_updated (neither
            # asyncio nor uvloop does that today): a buffer of its own for this one read
            rx = RxBuffer(BUFFER_SIZE)
        n = len(self._rest)
        if n:
            rx.buf[:n] = self._rest  # nothing is committed until buffer_updated
        rx.owner = self
        self._lent = rx
        return rx.view[n:]

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._buffer_updated(nbytes)
        except Exception as exc:  # a bug must end this session only, never reach the loop
            self.internal_error(exc)

    def _buffer_updated(self, nbytes: int) -> None:
        rx, self._lent = self._lent, None
        if rx is None or rx.owner is not self:
            raise RuntimeError("buffer_updated without get_buffer for this connection")
        rx.owner = None
        rx.busy = True
        try:
            self._consume(rx.buf, rx.view, len(self._rest) + nbytes)
        finally:
            rx.busy = False

    def _consume(self, buf: bytearray, view: memoryview, end: int) -> None:
        """Handle ``buf[:end]``: the last read after the previous partial packet."""
        session = self.session
        now = self.loop.time()
        if not session.http_done:
            data = bytes(view[:end])
            self._rest = b""
            self.http_phase_data(data, now)
            return
        start = 0
        fd = self.ip_fd
        is_open = session.is_open
        src = self._source_filter() if is_open else None
        fwd6 = self._ipv6_filter()
        counters = session.counters
        is_dhcp = self.is_dhcp
        slow = False
        rx_packets = rx_bytes = rx6_packets = rx6_bytes = 0
        batch: list[tuple[int, int]] | None = [] if self.vnet_hdr else None
        # proto.datapath's layout as locals: no call and no global lookup per packet
        version, hsize, mask, min_fast = SSTP_VERSION, HEADER_SIZE, LENGTH_MASK, IPV4_MIN_FAST
        ppp0, ppp1, ppp2, ppp3 = _PPP_IPV4
        v6_2, v6_3 = _PPP_IPV6[2], _PPP_IPV6[3]
        src_at, src_end = IPV4_SOURCE, IPV4_SOURCE + 4
        while end - start >= hsize:
            length = ((buf[start + 2] << 8) | buf[start + 3]) & mask
            if buf[start] != version or length < hsize:
                # framing lost: the session closes without sending anything (§3.1.5.1)
                session.receive_data(bytes(view[start:end]), now)
                start = end
                slow = True
                break
            if end - start < length:
                break
            p = start + hsize
            ip = p + 4
            if (
                is_open
                and not buf[start + 1] & 1
                and length >= min_fast
                and fd >= 0
                and buf[p] == ppp0
                and buf[p + 1] == ppp1
                and buf[p + 2] == ppp2
                and buf[p + 3] == ppp3
                and (buf[ip + 9] != 17 or not is_dhcp(view[ip : start + length]))
            ):
                if buf[ip] >> 4 == 4 and (src is None or view[ip + src_at : ip + src_end] == src):
                    if batch is not None:
                        batch.append((ip, start + length))
                    else:
                        try:
                            os.write(fd, view[ip : start + length])
                        except OSError:
                            self.tun_errors += 1
                    rx_packets += 1
                    rx_bytes += start + length - ip
                else:
                    counters.dropped_spoofed += 1
            elif (
                fwd6 is not None
                and not buf[start + 1] & 1
                and length >= IPV6_MIN_FAST
                and fd >= 0
                and buf[p] == ppp0
                and buf[p + 1] == ppp1
                and buf[p + 2] == v6_2
                and buf[p + 3] == v6_3
                and fwd6(view[p + 4 : start + length])
            ):
                try:
                    if batch is not None:  # offload: each write starts with a virtio_net_hdr
                        os.writev(fd, (PLAIN, view[p + 4 : start + length]))
                    else:
                        os.write(fd, view[p + 4 : start + length])
                except OSError:
                    self.tun_errors += 1
                rx6_packets += 1
                rx6_bytes += start + length - p - 4
            else:
                session.receive_packet(
                    bool(buf[start + 1] & 1), bytes(view[p : start + length]), now
                )
                slow = True
                if session.closed:
                    start = end
                    break
                is_open = session.is_open
                src = self._source_filter() if is_open else None
                fwd6 = self._ipv6_filter()
            start += length
        if batch:
            # written while the shared buffer is still ours (the spans point into it)
            self.tun_errors += write_batch(fd, buf, batch, counters)
        self._rest = bytes(view[start:end]) if start < end else b""
        if rx_packets:
            counters.rx_packets += rx_packets
            counters.rx_bytes += rx_bytes
        if rx6_packets:
            counters.rx_packets += rx6_packets
            counters.rx_bytes += rx6_bytes
            counters.rx6_packets += rx6_packets
            counters.rx6_bytes += rx6_bytes
        session.touch(now)
        if self.moderator is not None and streaming(
            rx_bytes + rx6_bytes, rx_packets + rx6_packets
        ):
            self.moderator.engage(self)  # it streams: fewer, larger reads from now on
        if slow:
            self._after_input()

    def http_phase_data(self, data: bytes, now: float) -> None:
        """Bytes before the SSTP stream (the HTTP upgrade); the server may divert them."""
        self.session.receive_data(data, now)
        self._after_input()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        # a last get_buffer without buffer_updated (EOF, a reset) left the shared buffer
        # lent to us: it must not keep this closed connection alive
        if self._lent is not None:
            if self._lent.owner is self:
                self._lent.owner = None
            self._lent = None
        self._rest = b""
        self._cancel_timer()
        if self.moderator is not None:
            self.moderator.forget(self)
        try:
            self.session.abort_connection(
                "connection lost" if exc is None else f"connection lost: {exc}", self.loop.time()
            )
            self._dispatch(self.session.pop_events())
        except Exception as err:
            self.internal_error(err)
        self.transport = None

    def internal_error(self, exc: Exception) -> None:
        """An unexpected exception inside this session: one log line, a Call Abort if the
        session can still produce one, then the connection is closed. Nothing else is
        affected; the subclass's ``connection_lost`` does the accounting."""
        self.internal_errors += 1
        log.error(
            "%s: internal error, session aborted: %s: %s",
            self.log_name(),
            type(exc).__name__,
            exc,
        )
        self._cancel_timer()
        tr = self.transport
        try:
            self.session.connection.abort(Status.INVALID_FRAME_RECEIVED, self.loop.time())
            data = self.session.data_to_send()
        except Exception:
            data = b""
        if tr is not None and not tr.is_closing():
            if data:
                tr.write(data)
            tr.close()

    def log_name(self) -> str:
        return "session"

    # ------------------------------------------------------------ plumbing
    def _after_input(self) -> None:
        """Act on the session's events, write what it produced, re-arm its timer.

        Events go first: a handler may decide to hold this output back
        (``hold_output``), e.g. the answer to a failed login."""
        session = self.session
        data = session.data_to_send()
        events = session.pop_events()
        if events:
            self._dispatch(events)
        if self._held is not None:
            if data:
                self._held.append(data)
            if session.closed:
                self._cancel_timer()  # the release writes, then closes
                return
        else:
            if data and self.transport is not None:
                self.transport.write(data)
            if session.closed:
                self._cancel_timer()
                if self.transport is not None:
                    self.transport.close()
                return
        self._arm_timer()

    def hold_output(self, delay: float) -> None:
        """Send nothing for ``delay`` seconds and read nothing meanwhile; then send all
        that was produced (and close if the session ended)."""
        if self._held is not None or self.transport is None:
            return
        self._held = []
        with contextlib.suppress(RuntimeError, AttributeError):
            self.transport.pause_reading()
        self._hold_timer = self.loop.call_later(delay, self._release_output)

    def release_output(self) -> None:
        """End a ``hold_output`` before its time."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        self._release_output()

    def _release_output(self) -> None:
        self._hold_timer = None
        held, self._held = self._held, None
        tr = self.transport
        if tr is None or held is None:
            return
        if held:
            tr.write(b"".join(held))
        if self.session.closed:
            tr.close()
            return
        with contextlib.suppress(RuntimeError, AttributeError):
            tr.resume_reading()
        self._arm_timer()

    def _source_filter(self) -> bytes | None:
        """The source address IPv4 packets from the peer must carry, None for any.

        A server session accepts only the address it assigned; a client accepts whatever
        the server routes to it."""
        session = self.session
        if isinstance(session, ServerSession):
            peer = session.peer_address
            return peer.packed if peer is not None else b"\xff" * 5
        return None

    def _ipv6_filter(self) -> Callable[[memoryview], bool] | None:
        """The fast path's test for IPv6 packets from the peer, None: all take the slow path
        (a server session without open IPv6, and the client)."""
        session = self.session
        if isinstance(session, ServerSession) and session.prefix6 is not None:
            return session.forwardable6
        return None

    def _arm_timer(self) -> None:
        at = self.session.get_timer()
        if at == self._timer_at:
            return
        self._cancel_timer()
        if at is not None:
            self._timer_at = at
            self._timer = self.loop.call_at(at, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.session.handle_timer(self.loop.time())
            self._after_input()
        except Exception as exc:
            self.internal_error(exc)

    def _dispatch(self, events: list[Event]) -> None:
        for ev in events:
            self.on_event(ev)

    on_event: Callable[[Event], None]
