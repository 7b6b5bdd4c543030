"""RADIUS over UDP for the daemon: requests with retransmission and failover, accounting,
and the Dynamic Authorization (RFC 5176) listener. Packets come from ``sstpd.proto.radius``.

One unconnected UDP socket per :class:`RadiusClient`; an answer is matched by the server
address and the identifier, then verified against the request it answers. Anything that
does not verify (forged, wrong secret, no Message-Authenticator where one is required,
malformed) is logged and dropped; the request keeps waiting for the genuine answer.

Failover: servers are tried in configuration order; a server that let ``retries`` + 1
transmissions time out is marked dead for ``dead_time`` seconds and skipped (unless all
are dead, then the least recently failed is tried).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address

from sstpd.config import RadiusConfig, RadiusServer
from sstpd.errors import ParseError
from sstpd.proto import radius
from sstpd.proto.radius import RadiusPacket

log = logging.getLogger("sstpd.radius")

# (identifier, authenticator of the request, secret, delay) -> (packet, encoded bytes)
Build = Callable[[int, bytes, bytes, int], tuple[RadiusPacket, bytes]]


RECEIVE_BUFFER = 1 << 20  # a burst of answers (mass reconnect) must not overflow it


def _grow_receive_buffer(tr: asyncio.DatagramTransport) -> None:
    sock = tr.get_extra_info("socket")
    if sock is None:
        return
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, RECEIVE_BUFFER)  # FORCE: CAP_NET_ADMIN
            return
        except OSError:
            continue


def _family(address: str) -> int:
    return socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET


class RadiusTimeout(Exception):
    """No server answered."""


@dataclass
class _Peer:
    server: RadiusServer
    dead_until: float = 0.0
    seen_message_authenticator: bool = False
    next_id: int = field(default_factory=lambda: os.urandom(1)[0])
    in_flight: set[int] = field(default_factory=set)  # identifiers awaiting an answer

    @property
    def host(self) -> str:
        return str(ip_address(self.server.address))  # as recvfrom reports it


@dataclass
class _Pending:
    peer: _Peer
    authenticator: bytes
    future: asyncio.Future[RadiusPacket]


class RadiusClient(asyncio.DatagramProtocol):
    def __init__(self, config: RadiusConfig, servers: tuple[RadiusServer, ...], kind: str) -> None:
        self.config = config
        self.kind = kind  # "authentication" / "accounting", for the log
        self.peers = [_Peer(s) for s in servers]
        self.transports: dict[int, asyncio.DatagramTransport] = {}  # one socket per family
        self.pending: dict[tuple[str, int, int], _Pending] = {}
        self.dropped = 0
        self.loop = asyncio.get_running_loop()

    def reconfigure(self, config: RadiusConfig, servers: tuple[RadiusServer, ...]) -> None:
        """New settings for requests from now on; a server kept keeps its dead mark."""
        old = {(p.server.address, p.server.port): p for p in self.peers}
        self.config = config
        peers = []
        for s in servers:
            peer = _Peer(s)
            was = old.get((s.address, s.port))
            if was is not None and was.server == s:
                peer = was
            elif was is not None:  # new secret: identifiers still in flight stay taken
                peer.in_flight, peer.next_id = was.in_flight, was.next_id
            peers.append(peer)
        self.peers = peers

    async def open(self) -> None:
        """Bind the sockets for the address families of the servers (a reload adding a
        server of another family calls this again)."""
        for p in self.peers:
            family = _family(p.server.address)
            if family not in self.transports:
                any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
                tr, _ = await self.loop.create_datagram_endpoint(
                    lambda: self, local_addr=(any_addr, 0), family=family
                )
                self.transports[family] = tr
                _grow_receive_buffer(tr)

    def close(self) -> None:
        for tr in self.transports.values():
            tr.close()
        self.transports.clear()
        for p in self.pending.values():
            if not p.future.done():
                p.future.cancel()

    # ------------------------------------------------------------ answers
    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        host, port = str(ip_address(str(addr[0]).split("%")[0])), int(addr[1])
        try:
            pkt = radius.decode(data)
        except ParseError as e:
            self._drop(host, f"malformed answer: {e}")
            return
        entry = self.pending.get((host, port, pkt.identifier))
        if entry is None:
            self._drop(host, f"answer id {pkt.identifier} matches no request")
            return
        peer = entry.peer
        mode = self.config.require_message_authenticator
        required = mode == "yes" or (mode == "auto" and peer.seen_message_authenticator)
        why = radius.verify_reply(
            data,
            pkt,
            entry.authenticator,
            peer.server.secret,
            require_message_authenticator=required and self.kind == "authentication",
        )
        if why:
            self._drop(host, f"answer id {pkt.identifier} ignored: {why}")
            return
        if pkt.get(radius.Attr.MESSAGE_AUTHENTICATOR) is not None:
            peer.seen_message_authenticator = True
        del self.pending[(host, port, pkt.identifier)]
        if not entry.future.done():
            entry.future.set_result(pkt)

    def _drop(self, host: str, why: str) -> None:
        self.dropped += 1
        log.warning("RADIUS %s from %s: %s", self.kind, host, why)

    def error_received(self, exc: Exception) -> None:
        log.debug("RADIUS %s socket: %s", self.kind, exc)

    # ------------------------------------------------------------ requests
    def _order(self) -> list[_Peer]:
        now = self.loop.time()
        alive = [p for p in self.peers if p.dead_until <= now]
        return alive or sorted(self.peers, key=lambda p: p.dead_until)[:1]

    def _free_id(self, peer: _Peer) -> int | None:
        if len(peer.in_flight) >= 256:
            return None
        while peer.next_id in peer.in_flight:
            peer.next_id = (peer.next_id + 1) & 0xFF
        ident = peer.next_id
        peer.next_id = (ident + 1) & 0xFF
        return ident

    async def _new_id(self, peer: _Peer) -> int | None:
        """A free identifier for ``peer``; with 256 requests in flight to it, wait (at most
        one timeout) for one to finish: back-pressure instead of failing a login."""
        deadline = self.loop.time() + self.config.timeout
        while (ident := self._free_id(peer)) is None:
            if self.loop.time() >= deadline:
                return None
            await asyncio.sleep(0.02)
        return ident

    async def request(self, build: Build, what: str) -> tuple[RadiusPacket, bytes, RadiusServer]:
        """Send to the first live server, retransmit, fail over; returns (answer, request
        authenticator, server). Raises RadiusTimeout when no server answered."""
        cfg = self.config
        started = self.loop.time()
        for peer in self._order():
            s = peer.server
            for attempt in range(cfg.retries + 1):
                ident = await self._new_id(peer)
                if ident is None:
                    log.warning("RADIUS %s server %s: 256 requests in flight", self.kind, s.address)
                    continue
                delay = int(self.loop.time() - started)
                auth = os.urandom(16)
                pkt, data = build(ident, auth, s.secret, delay)
                auth = pkt.authenticator  # accounting: computed by the signer
                key = (peer.host, s.port, ident)
                fut: asyncio.Future[RadiusPacket] = self.loop.create_future()
                self.pending[key] = _Pending(peer, auth, fut)
                peer.in_flight.add(ident)
                try:
                    transport = self.transports.get(_family(s.address))
                    if transport is None:
                        raise RadiusTimeout(f"no socket for {s.address}")
                    transport.sendto(data, (s.address, s.port))
                    answer = await asyncio.wait_for(fut, cfg.timeout)
                except TimeoutError:
                    log.info(
                        "RADIUS %s server %s:%d: no answer to %s (try %d)",
                        self.kind, s.address, s.port, what, attempt + 1,
                    )  # fmt: skip
                    continue
                finally:
                    self.pending.pop(key, None)
                    peer.in_flight.discard(ident)
                peer.dead_until = 0.0
                return answer, auth, s
            peer.dead_until = self.loop.time() + cfg.dead_time
            log.warning(
                "RADIUS %s server %s:%d marked dead for %gs", self.kind, s.address, s.port,
                cfg.dead_time,
            )  # fmt: skip
        raise RadiusTimeout(f"no RADIUS {self.kind} server answered {what}")
