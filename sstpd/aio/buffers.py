"""The receive buffers of one thread, shared by all its connections: one socket read
at a time lands in them and is consumed before the next, so an idle connection holds no
receive buffer at all (docs/PERFORMANCE-NOTES.md, "Memory per idle session").

* ``shared_buffer()``: the SSTP layer's (``aio.protocol``), lent to whichever connection
  is reading (``RxBuffer.owner``), SSTP packets framed in place;
* ``read_buffer()``: sstpd's TLS transport's (``aio.tlsstream``), one socket read of
  ciphertext, fed from there to the connection's incoming BIO.
"""

from __future__ import annotations

import threading

BUFFER_SIZE = 64 * 1024  # shared_buffer()'s size: the SSTP layer's reads
READ_SIZE = 256 * 1024  # read_buffer()'s size: one socket read of the TLS transport


class RxBuffer:
    """A receive buffer and to whom it is lent (``owner``: between ``get_buffer`` and
    ``buffer_updated``; ``busy``: while ``buffer_updated`` consumes it)."""

    __slots__ = ("buf", "busy", "owner", "view")

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.owner: object = None
        self.busy = False


_local = threading.local()


def shared_buffer() -> RxBuffer:
    """This thread's receive buffer, made on first use (``BUFFER_SIZE`` bytes)."""
    rx: RxBuffer | None = getattr(_local, "rx", None)
    if rx is None or len(rx.buf) != BUFFER_SIZE:
        rx = _local.rx = RxBuffer(BUFFER_SIZE)
    return rx


def read_buffer() -> memoryview:
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(READ_SIZE))
    return view
