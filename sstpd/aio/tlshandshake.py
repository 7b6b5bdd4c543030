"""The server side's TLS handshake for sstpd's own transport (``aio.tlsstream``): an
``ssl.SSLObject`` between two memory BIOs, driven over the accepted non-blocking socket,
then handed over, BIOs and all, to a ``TlsTransport``. The client side (``sstpd connect``)
keeps the event loop's transport.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from sstpd.aio.tlsstream import TlsTransport

HANDSHAKE_READ = 16 * 1024


async def handshake(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, context: ssl.SSLContext
) -> TlsTransport:
    """The server side of the TLS handshake on the non-blocking ``sock``; the caller bounds
    it in time and closes ``sock`` when it raises (``ssl.SSLError``, ``ConnectionError``)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # as asyncio's and uvloop's TCP transports: a write's last segment must not wait
        # for the peer's ACK (Nagle), nor a handshake flight for a delayed ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            sslobj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        if outgoing.pending:
            await loop.sock_sendall(sock, outgoing.read())
        if done:
            return TlsTransport(loop, sock, sslobj, incoming, outgoing)
        data = await loop.sock_recv(sock, HANDSHAKE_READ)
        if not data:
            raise ConnectionResetError("connection closed during the TLS handshake")
        incoming.write(data)
