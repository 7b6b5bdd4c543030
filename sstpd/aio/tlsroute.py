"""Choosing the TLS context of a connection from its ClientHello (ACME TLS-ALPN-01).

The listener (``sstpd.aio.listener``) calls :meth:`TlsRouter.route` on each accepted
socket before TLS starts. It peeks (``MSG_PEEK``: nothing is consumed, OpenSSL later
reads the same bytes) until the ClientHello records are complete, waiting with
``SO_RCVLOWAT`` set to the bytes still missing so a slowly arriving hello does not spin
the loop. Then:

* ALPN offers exactly ``acme-tls/1`` and SNI names a pending challenge: the challenge
  context (challenge certificate, ALPN ``acme-tls/1`` selected, TLS >= 1.2) and a
  protocol that sends nothing and closes (:class:`ChallengeProtocol`);
* ALPN exactly ``acme-tls/1`` without a pending challenge for that name: closed;
* everything else (SSTP clients with or without SNI, browsers, garbage that OpenSSL will
  reject itself): the normal context. A normal client never gets a challenge
  certificate, whatever name it asks for.

A peer that does not complete its ClientHello within the timeout, or closes, is closed.
Challenges are added and removed from the ACME worker thread; the dict update is atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import struct
import tempfile
from dataclasses import dataclass

from sstpd.errors import ParseError
from sstpd.proto import clienthello

log = logging.getLogger("sstpd")

_TCP_CLOSED_STATES = {7, 8, 9}  # TCP_CLOSE, TCP_CLOSE_WAIT, TCP_LAST_ACK (linux/tcp_states.h)
SHORT_WAKE_RETRY = 0.05


@dataclass(frozen=True)
class Route:
    context: ssl.SSLContext | None  # None: the listener's normal context
    challenge: bool = False


NORMAL = Route(None)


def challenge_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([clienthello.ACME_TLS_1.decode()])
    with tempfile.TemporaryDirectory(prefix="sstpd-acme-") as tmp:
        path = os.path.join(tmp, "challenge.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem + b"\n" + cert_pem)
        ctx.load_cert_chain(path)
    return ctx


class TlsRouter:
    def __init__(self) -> None:
        self._challenges: dict[str, ssl.SSLContext] = {}
        self.challenge_handshakes = 0

    # called from the ACME thread
    def add_challenge(self, name: str, cert_pem: bytes, key_pem: bytes) -> None:
        self._challenges[name.lower()] = challenge_context(cert_pem, key_pem)

    def remove_challenge(self, name: str) -> None:
        self._challenges.pop(name.lower(), None)

    @property
    def pending(self) -> list[str]:
        return sorted(self._challenges)

    def choose(self, hello: clienthello.ClientHello) -> Route | None:
        """The route for ``hello``; None = close the connection."""
        if not hello.only_acme:
            return NORMAL
        ctx = self._challenges.get(hello.server_name or "")
        if ctx is None:
            return None
        return Route(ctx, challenge=True)

    async def route(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, peer: str, timeout: float
    ) -> Route | None:
        try:
            async with asyncio.timeout(timeout):
                hello = await peek_client_hello(loop, sock)
        except ParseError as exc:
            log.debug("%s: ClientHello not understood (%s): normal TLS context", peer, exc)
            return NORMAL
        except TimeoutError:
            log.info("%s: no complete ClientHello within %g s, closing", peer, timeout)
            return None
        except (ConnectionError, OSError) as exc:
            log.debug("%s: closed before the ClientHello: %s", peer, exc)
            return None
        route = self.choose(hello)
        if hello.only_acme:
            what = "challenge" if route is not None else "no pending challenge, closing"
            log.info("%s: ClientHello sni=%s alpn=acme-tls/1 -> %s", peer, hello.server_name, what)
            if route is not None:
                self.challenge_handshakes += 1
        return route


async def peek_client_hello(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> clienthello.ClientHello:
    """Peek until the ClientHello is complete. Raises ParseError, ConnectionError."""
    need = 5
    try:
        while True:
            await _readable(loop, sock, need)
            try:
                data = sock.recv(clienthello.MAX_INPUT, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("closed before the ClientHello")
            res = clienthello.decode(data)
            if isinstance(res, clienthello.ClientHello):
                return res
            if len(data) < need and _peer_closed(sock):
                raise ConnectionError("closed in the middle of the ClientHello")
            if len(data) < need:
                await asyncio.sleep(SHORT_WAKE_RETRY)  # woken early (memory pressure)
            need = res.need
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket, need: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


def _peer_closed(sock: socket.socket) -> bool:
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return True
    return struct.unpack_from("B", info)[0] in _TCP_CLOSED_STATES


class ChallengeProtocol(asyncio.Protocol):
    """The application side of a validator's connection: nothing to say; closed when the
    validator closes or after ``LINGER`` seconds."""

    LINGER = 10.0

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
