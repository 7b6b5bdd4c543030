"""Read moderation: fewer, larger reads from clients that stream (``[tunnel]
read_moderation_bytes``, ``read_moderation_delay``).

A client that sends one TLS record per packet makes the daemon wake up for every few
packets, and a wake-up (epoll, ``recv``, the TLS layer's per-read work, the TUN write, the
scheduler) costs more than the packets it brings. A NIC solves this with interrupt
coalescing; this is the same in userspace: once one read of a connection brought at least
``ENGAGE_BYTES`` of tunnel packets, ``ENGAGE_MEAN`` bytes each on average (it streams),
its socket gets ``SO_RCVLOWAT = read_moderation_bytes``, so the kernel wakes the daemon
for it only when that many bytes wait, and one timer for all moderated connections puts
``SO_RCVLOWAT`` back to 1 after ``read_moderation_delay`` (Linux wakes the reader at once
if data waits then). The next streaming read engages it again. A connection that sends
little (interactive traffic, the ACKs of a download) never brings that in one read and
is never delayed; a streaming one's packets wait at most the delay (uvloop's timers have
1 ms granularity).
Measured in docs/PERFORMANCE-NOTES.md ("Read moderation").

This is I/O plumbing only: the decision is ``streaming()``, called once per read from the
data path (``SstpStreamProtocol._consume``); the rest is a socket option and a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Protocol

log = logging.getLogger("sstpd")

ENGAGE_BYTES = 4096  # tunnel payload in one read that counts as streaming (≈ 3 full packets)
ENGAGE_MEAN = 512  # ... in packets of this mean size at least (not a pile of ACKs)


def streaming(nbytes: int, packets: int) -> bool:
    """Whether one read that brought ``packets`` tunnel packets of ``nbytes`` in all is a
    client streaming data: enough bytes, in large packets. A download's ACKs (60 bytes
    each) that piled up while the daemon was busy are not."""
    return nbytes >= ENGAGE_BYTES and nbytes >= packets * ENGAGE_MEAN


class _Moderated(Protocol):
    transport: asyncio.Transport | None


class ReadModerator:
    """Holds the moderated connections of one event loop and the one timer that releases
    them. ``lowat`` 0 switches it off (``engage`` does nothing)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lowat: int, delay: float) -> None:
        self.loop = loop
        self.lowat = lowat
        self.delay = delay
        self._held: dict[_Moderated, Any] = {}  # connection -> its socket
        self._tick: asyncio.TimerHandle | None = None
        self.engaged = 0  # times a connection was moderated (for the benchmarks)

    def configure(self, lowat: int, delay: float) -> None:
        """A reload: moderated connections are released at the next tick as before."""
        self.lowat, self.delay = lowat, delay

    def engage(self, conn: _Moderated) -> None:
        if not self.lowat or conn in self._held:
            return
        tr = conn.transport
        sock = tr.get_extra_info("socket") if tr is not None else None
        if sock is None:
            return
        try:
            # at most a quarter of the receive buffer: Linux clamps the TCP window to the
            # low-water mark when that needs a larger buffer (tcp_set_rcvlowat), and it
            # must never shrink what a client may have in flight
            rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, min(self.lowat, rcvbuf // 4))
        except OSError:
            return  # closing: nothing to moderate
        self._held[conn] = sock
        self.engaged += 1
        if self._tick is None:
            self._tick = self.loop.call_later(self.delay, self._release_all)

    def forget(self, conn: _Moderated) -> None:
        """The connection is closing: its socket must not be touched any more."""
        self._held.pop(conn, None)

    def _release_all(self) -> None:
        held, self._held = self._held, {}
        self._tick = None
        for sock in held.values():
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        self._release_all()

    @property
    def held(self) -> int:
        return len(self._held)
