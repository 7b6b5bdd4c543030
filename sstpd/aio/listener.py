"""Listening sockets and the admission of new connections.

The daemon runs its own accept loop (not ``create_server``) so that it sees every TCP
connection from the first moment, before TLS:

* the ``Gate`` (the server) admits it or not: budgets of pending (unauthenticated)
  connections in total and per source address, a source blocked for failed logins, file
  descriptors left; a refused connection is closed at once and counted by outcome;
* the TLS handshake has the short ``setup_timeout`` (TCP accept to SSTP request), not
  the PPP handshake budget; a handshake that fails or times out is counted too;
* ``accept()`` failing with EMFILE/ENFILE (no file descriptor left) pauses this listener
  for ``ACCEPT_PAUSE`` seconds and logs one line per ``LOG_INTERVAL``, never a storm.

With ``proxy_protocol`` each connection starts with a PROXY header from the load
balancer, read here byte-exactly before TLS (or HTTP) begins (``start_tls`` cannot be
handed bytes that were already read), then the socket goes to
``connect_accepted_socket`` with the TLS context. With a ``router``
(``sstpd.aio.tlsroute``) the ClientHello is looked at first, for ACME TLS-ALPN-01; such
a validator connection keeps its pending slot until its TLS handshake is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sstpd.aio import tlshandshake
from sstpd.aio.tlsroute import ChallengeProtocol, TlsRouter
from sstpd.errors import ParseError
from sstpd.proto import proxy
from sstpd.proto.outcome import Outcome

log = logging.getLogger("sstpd")

HEADER_TIMEOUT = 10.0
ACCEPT_PAUSE = 0.5  # seconds without accept() after EMFILE/ENFILE
LOG_INTERVAL = 10.0  # at most one "accept failed" line per interval and listener


@dataclass
class Pending:
    """One connection that has not authenticated yet: its slot in the pending budget."""

    source: str  # the client's address (the PROXY header's source when there is one)
    deadline: float  # loop time by which the SSTP request must be complete
    released: bool = False


class Gate(Protocol):
    """What the listener asks the server (``Server`` implements it)."""

    @property
    def setup_timeout(self) -> float: ...

    def admit(self, source: str) -> Outcome | None:
        """None: take it (the caller then calls ``hold``); else the refusal outcome."""

    def hold(self, source: str, deadline: float) -> Pending: ...

    def release(self, pending: Pending) -> None: ...

    def count_outcome(self, outcome: Outcome, source: str) -> None: ...


ProtocolFactory = Callable[[tuple[str, int] | None, Pending], asyncio.BaseProtocol]


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


class Listener:
    """Accept loop for one address; ``close()`` stops it (like ``asyncio.Server``)."""

    def __init__(
        self,
        host: str,
        port: int,
        factory: ProtocolFactory,
        ssl_context: ssl.SSLContext | None,
        gate: Gate,
        *,
        proxy_protocol: bool = False,
        router: TlsRouter | None = None,
        reuse_port: bool = False,
        own_tls: bool = True,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # server.workers: every worker listens, the kernel spreads connections
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((host, port))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.factory = factory
        self.ssl = ssl_context
        self.gate = gate
        self.proxy_protocol = proxy_protocol
        self.router = router
        self.own_tls = own_tls  # sstpd's TLS transport (aio.tlsstream); False: the loop's
        self.accept_errors = 0
        self._last_log = -LOG_INTERVAL
        self._suppressed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = self.loop.create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        while True:
            try:
                conn, addr = await self.loop.sock_accept(self.sock)
            except OSError as exc:
                self._accept_failed(exc)
                await asyncio.sleep(ACCEPT_PAUSE if _out_of_fds(exc) else 0.05)
                continue
            try:
                self._accepted(conn, addr)
            except Exception:  # never let one connection end the accept loop
                log.exception("accepting a connection from %s failed", addr)
                with contextlib.suppress(OSError):
                    conn.close()

    def _accept_failed(self, exc: OSError) -> None:
        self.accept_errors += 1
        now = self.loop.time()
        if now - self._last_log < LOG_INTERVAL:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        pause = f"; not accepting for {ACCEPT_PAUSE:g} s" if _out_of_fds(exc) else ""
        log.warning("accept failed: %s%s%s", exc.strerror or exc, pause, more)
        self._last_log = now
        self._suppressed = 0

    def _accepted(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        conn.setblocking(False)
        source = str(addr[0])
        why = self.gate.admit(source)
        if why is not None:
            self.gate.count_outcome(why, source)
            _reset(conn)
            return
        pending = self.gate.hold(source, self.loop.time() + self.gate.setup_timeout)
        task = self.loop.create_task(self._handle(conn, addr, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: socket.socket, addr: tuple[str, int], pending: Pending) -> None:
        gate = self.gate
        real: tuple[str, int] | None = None
        if self.proxy_protocol:
            try:
                async with asyncio.timeout(min(HEADER_TIMEOUT, gate.setup_timeout)):
                    info = await read_proxy_header(self.loop, conn)
            except (ParseError, ConnectionError, TimeoutError, OSError) as exc:
                log.warning("%s:%d: no valid PROXY header, closing: %s", addr[0], addr[1], exc)
                gate.release(pending)
                gate.count_outcome(Outcome.PROXY_HEADER, pending.source)
                conn.close()
                return
            real = info.source
            if real is not None and real[0] != pending.source:
                # account the connection to the client behind the balancer from now on
                gate.release(pending)
                why = gate.admit(str(real[0]))
                if why is not None:
                    gate.count_outcome(why, str(real[0]))
                    _reset(conn)
                    return
                pending = gate.hold(str(real[0]), pending.deadline)
        remaining = max(pending.deadline - self.loop.time(), 0.1)
        context = self.ssl
        factory: Callable[[], asyncio.BaseProtocol] = lambda: self.factory(real, pending)  # noqa: E731
        challenge = False
        if self.router is not None and context is not None:
            host, port = real or addr
            route = await self.router.route(
                self.loop, conn, f"{host}:{port}", round(remaining, 1)
            )
            if route is None:
                self._tls_failed(conn, pending, Outcome.TLS_FAILED)
                return
            if route.challenge:
                context, factory, challenge = route.context, ChallengeProtocol, True
            remaining = max(pending.deadline - self.loop.time(), 0.1)
        try:
            if context is not None and not challenge and self.own_tls:
                async with asyncio.timeout(remaining):
                    transport = await tlshandshake.handshake(self.loop, conn, context)
                transport.start(factory())  # type: ignore[arg-type]  # ServerProtocol
                return
            async with asyncio.timeout(remaining + 0.5):
                await self.loop.connect_accepted_socket(
                    factory,
                    conn,
                    ssl=context,
                    ssl_handshake_timeout=remaining if context else None,
                )
            if challenge:  # an ACME validator: no session, its slot ends with the handshake
                gate.release(pending)
        except TimeoutError:
            self._tls_failed(conn, pending, Outcome.TIMEOUT_TLS)
        except (OSError, ssl.SSLError, EOFError) as exc:
            # asyncio/uvloop: "SSL handshake is taking longer than N seconds: aborting"
            timeout = isinstance(exc, ConnectionAbortedError) and "longer than" in str(exc)
            outcome = Outcome.TIMEOUT_TLS if timeout else Outcome.TLS_FAILED
            self._tls_failed(conn, pending, outcome)
            log.debug("%s: TLS handshake failed: %s", real or addr, exc)

    def _tls_failed(self, conn: socket.socket, pending: Pending, outcome: Outcome) -> None:
        if pending.released:  # the protocol took over (plain HTTP) and did the accounting
            return
        self.gate.release(pending)
        self.gate.count_outcome(outcome, pending.source)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        self._accepting.cancel()
        for task in self._tasks:
            task.cancel()
        self.sock.close()


def _out_of_fds(exc: OSError) -> bool:
    return exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def _reset(conn: socket.socket) -> None:
    """Close at once with a RST: nothing of the refused connection stays in the kernel."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
