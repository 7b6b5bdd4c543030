"""Dynamic Authorization Extensions (RFC 5176): the Disconnect-Request listener.

A datagram is answered only when it comes from a configured ``[[radius.dae_client]]``
address and its Request Authenticator (and Message-Authenticator, when present) verify
with that client's secret; anything else is logged and dropped without an answer. A
Disconnect-Request must name the session by User-Name, Acct-Session-Id and/or
Framed-IP-Address; every open session matching all of them is ended (Acct-Terminate-Cause
Admin-Reset) and the answer is Disconnect-ACK, else Disconnect-NAK with Error-Cause
(402 Missing Attribute, 503 Session Context Not Found). CoA-Requests get CoA-NAK 406.
A retransmitted request (same source, identifier and authenticator) gets the same answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sstpd.config import RadiusConfig
from sstpd.errors import ParseError
from sstpd.proto import aaa, radius
from sstpd.proto.radius import Code

log = logging.getLogger("sstpd.radius")

ERROR_UNSUPPORTED_EXTENSION = 406
_DUPLICATE_SECONDS = 30.0

# (criteria) -> number of sessions ended
Disconnect = Callable[[aaa.DisconnectCriteria], int]


class DaeServer(asyncio.DatagramProtocol):
    def __init__(self, config: RadiusConfig, disconnect: Disconnect) -> None:
        self.config = config
        self.disconnect = disconnect
        self.transport: asyncio.DatagramTransport | None = None
        self.loop = asyncio.get_running_loop()
        self.recent: dict[tuple[str, int, bytes], tuple[float, bytes]] = {}
        self.dropped = 0

    async def open(self) -> None:
        assert self.config.dae_listen is not None
        host, port = self.config.dae_listen
        await self.loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        log.info("dynamic authorization (RFC 5176) on %s:%d", host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def secret_for(self, host: str) -> bytes | None:
        for c in self.config.dae_clients:
            if c.address == host:
                return c.secret
        return None

    def _drop(self, host: str, why: str) -> None:
        self.dropped += 1
        log.warning("dynamic authorization from %s dropped: %s", host, why)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        host = str(addr[0])
        secret = self.secret_for(host)
        if secret is None:
            self._drop(host, "not a configured dae_client")
            return
        try:
            pkt = radius.decode(data)
        except ParseError as e:
            self._drop(host, f"malformed: {e}")
            return
        if pkt.code not in (Code.DISCONNECT_REQUEST, Code.COA_REQUEST):
            self._drop(host, f"unexpected code {pkt.code}")
            return
        if not radius.verify_request(data, pkt, secret):
            self._drop(host, "bad authenticator (wrong secret?)")
            return
        now = self.loop.time()
        self.recent = {k: v for k, v in self.recent.items() if v[0] > now}
        key = (host, pkt.identifier, pkt.authenticator)
        cached = self.recent.get(key)
        if cached is None:
            answer = dae_reply(pkt, secret, self.disconnect, host)
            cached = self.recent[key] = (now + _DUPLICATE_SECONDS, answer)
        assert self.transport is not None
        self.transport.sendto(cached[1], addr)


def dae_reply(pkt: radius.RadiusPacket, secret: bytes, disconnect: Disconnect, host: str) -> bytes:
    if pkt.code == Code.COA_REQUEST:
        log.info("CoA-Request from %s: not supported, CoA-NAK", host)
        return aaa.dae_reply(pkt, ERROR_UNSUPPORTED_EXTENSION, secret)
    criteria = aaa.disconnect_criteria(pkt)
    if criteria.empty:
        log.info("Disconnect-Request from %s names no session: NAK", host)
        return aaa.dae_reply(pkt, radius.ERROR_MISSING_ATTRIBUTE, secret)
    ended = disconnect(criteria)
    log.info("Disconnect-Request from %s for %s: %d sessions ended", host, _show(criteria), ended)
    if not ended:
        return aaa.dae_reply(pkt, radius.ERROR_SESSION_NOT_FOUND, secret)
    return aaa.dae_reply(pkt, None, secret)


def _show(c: aaa.DisconnectCriteria) -> str:
    parts: Iterable[str] = (
        f"{k}={v}"
        for k, v in (("user", c.user), ("session", c.session_id), ("ip", c.framed_ip))
        if v is not None
    )
    return " ".join(parts)
