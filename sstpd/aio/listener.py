"""Listening sockets. With ``proxy_protocol`` each connection starts with a PROXY header
from the load balancer, read here byte-exactly before TLS (or HTTP) begins.

asyncio's ``create_server`` would start TLS at once, and ``start_tls`` cannot be handed
bytes that were already read; so for the PROXY protocol the daemon runs its own accept
loop, reads exactly the header with ``sock_recv`` (never a byte of the TLS ClientHello),
then hands the socket to ``connect_accepted_socket`` with the TLS context.

The same loop runs without PROXY headers (``proxy=False``) when a ``router``
(``sstpd.aio.tlsroute``) must look at the ClientHello first, for ACME TLS-ALPN-01.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

from sstpd.aio.tlsroute import ChallengeProtocol, TlsRouter
from sstpd.errors import ParseError
from sstpd.proto import proxy

log = logging.getLogger("sstpd")

HEADER_TIMEOUT = 10.0

ProtocolFactory = Callable[[tuple[str, int] | None], asyncio.BaseProtocol]


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise ConnectionError("closed before the PROXY header was complete")
        data += chunk
    return data


async def read_proxy_header(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> proxy.ProxyInfo:
    """Read one PROXY v1/v2 header and not a byte more. Raises ParseError/ConnectionError."""
    data = await _recv_exactly(loop, sock, 6)
    if data == proxy.V1_PREFIX:
        while not data.endswith(b"\r\n"):
            if len(data) >= proxy.V1_MAX:
                raise ParseError("PROXY v1 line too long")
            data += await _recv_exactly(loop, sock, 1)
    else:
        data += await _recv_exactly(loop, sock, 16 - 6)
        data += await _recv_exactly(loop, sock, int.from_bytes(data[14:16], "big"))
    res = proxy.parse(data)
    if res is None or res[1] != len(data):
        raise ParseError("incomplete PROXY header")
    return res[0]


class ProxyProtocolListener:
    """Accept loop for one address; ``close()`` stops it (like ``asyncio.Server``)."""

    def __init__(
        self,
        host: str,
        port: int,
        factory: ProtocolFactory,
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
        *,
        proxy: bool = True,
        router: TlsRouter | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.factory = factory
        self.ssl = ssl_context
        self.handshake_timeout = handshake_timeout
        self.proxy = proxy
        self.router = router
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = self.loop.create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        while True:
            try:
                conn, addr = await self.loop.sock_accept(self.sock)
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = self.loop.create_task(self._handle(conn, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        conn.setblocking(False)
        source: tuple[str, int] | None = None
        if self.proxy:
            try:
                async with asyncio.timeout(HEADER_TIMEOUT):
                    info = await read_proxy_header(self.loop, conn)
            except (ParseError, ConnectionError, TimeoutError, OSError) as exc:
                log.warning("%s:%d: no valid PROXY header, closing: %s", addr[0], addr[1], exc)
                conn.close()
                return
            source = info.source
        context = self.ssl
        factory: Callable[[], asyncio.BaseProtocol] = lambda: self.factory(source)  # noqa: E731
        if self.router is not None and context is not None:
            host, port = source or addr
            peer = f"{host}:{port}"
            route = await self.router.route(self.loop, conn, peer, self.handshake_timeout)
            if route is None:
                conn.close()
                return
            if route.challenge:
                context, factory = route.context, ChallengeProtocol
        try:
            await self.loop.connect_accepted_socket(
                factory,
                conn,
                ssl=context,
                ssl_handshake_timeout=self.handshake_timeout if context else None,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("%s: TLS handshake failed: %s", source or addr, exc)
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._accepting.cancel()
        for task in self._tasks:
            task.cancel()
        self.sock.close()
