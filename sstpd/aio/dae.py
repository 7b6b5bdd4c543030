"""Dynamic Authorization Extensions (RFC 5176): the Disconnect-Request listener.

A datagram is answered only when it comes from a configured ``[[radius.dae_client]]``
address and its Request Authenticator (and Message-Authenticator, when present) verify
with that client's secret; anything else is logged and dropped without an answer. A
Disconnect-Request must name the session by User-Name, Acct-Session-Id, Framed-IP-Address,
Framed-IPv6-Prefix (the session's /64 exactly: another length matches nothing) and/or
Framed-Interface-Id (the peer's IPV6CP identifier while IPv6 is open, as accounting
reports it); every open session matching all of them is ended (Acct-Terminate-Cause
Admin-Reset) and the answer is Disconnect-ACK, else Disconnect-NAK with Error-Cause (402
Missing Attribute, 407 Invalid Attribute Value for a malformed Framed-IPv6-Prefix,
Framed-IP-Address or Framed-Interface-Id, 503 Session Context Not Found). CoA-Requests
get CoA-NAK 406.
A retransmitted request (same source, identifier and authenticator) gets the same answer.

With ``server.workers`` > 1 the supervisor alone listens; its ``disconnect`` is a
coroutine that asks every worker (the control link's ``dae`` command: a
``sstpd.records_link.DaeRequest``, answered with a ``DaeRecord``) and adds up the
sessions they ended. A retransmission that arrives while the workers are still being
asked is dropped: the first answer goes out when they have answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sstpd.config import RadiusConfig
from sstpd.errors import ParseError
from sstpd.proto import aaa, radius
from sstpd.proto.radius import Code
from sstpd.records import RecordError
from sstpd.records_link import DaeRequest

log = logging.getLogger("sstpd.radius")

ERROR_UNSUPPORTED_EXTENSION = 406
_DUPLICATE_SECONDS = 30.0

# (criteria) -> number of sessions ended, at once or when the workers have answered
Disconnect = Callable[[aaa.DisconnectCriteria], int | Awaitable[int]]


class DaeServer(asyncio.DatagramProtocol):
    def __init__(self, config: RadiusConfig, disconnect: Disconnect) -> None:
        self.config = config
        self.disconnect = disconnect
        self.transport: asyncio.DatagramTransport | None = None
        self.loop = asyncio.get_running_loop()
        # (source, identifier, authenticator) -> (expiry, answer; None while being worked out)
        self.recent: dict[tuple[str, int, bytes], tuple[float, bytes | None]] = {}
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        assert self.config.dae_listen is not None
        host, port = self.config.dae_listen
        await self.loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        log.info("dynamic authorization (RFC 5176) on %s:%d", host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
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
            if not isinstance(answer, bytes):  # the workers are being asked
                self.recent[key] = (now + _DUPLICATE_SECONDS, None)
                task = self.loop.create_task(self._answer_later(key, answer, addr))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            cached = self.recent[key] = (now + _DUPLICATE_SECONDS, answer)
        if cached[1] is not None and self.transport is not None:
            self.transport.sendto(cached[1], addr)

    async def _answer_later(
        self, key: tuple[str, int, bytes], answer: Awaitable[bytes], addr: Any
    ) -> None:
        data = await answer
        self.recent[key] = (self.loop.time() + _DUPLICATE_SECONDS, data)
        if self.transport is not None:
            self.transport.sendto(data, addr)


def dae_reply(
    pkt: radius.RadiusPacket, secret: bytes, disconnect: Disconnect, host: str
) -> bytes | Awaitable[bytes]:
    """The answer to a verified request; an awaitable when ``disconnect`` is one."""
    if pkt.code == Code.COA_REQUEST:
        log.info("CoA-Request from %s: not supported, CoA-NAK", host)
        return aaa.dae_reply(pkt, ERROR_UNSUPPORTED_EXTENSION, secret)
    try:
        criteria = aaa.disconnect_criteria(pkt)
    except aaa.InvalidAttribute as e:
        log.info("Disconnect-Request from %s: %s: NAK", host, e)
        return aaa.dae_reply(pkt, radius.ERROR_INVALID_ATTRIBUTE_VALUE, secret)
    if criteria.empty:
        log.info("Disconnect-Request from %s names no session: NAK", host)
        return aaa.dae_reply(pkt, radius.ERROR_MISSING_ATTRIBUTE, secret)
    ended = disconnect(criteria)
    if isinstance(ended, int):
        return _ended_reply(pkt, secret, criteria, ended, host)

    async def later(pending: Awaitable[int]) -> bytes:
        return _ended_reply(pkt, secret, criteria, await pending, host)

    return later(ended)


def _ended_reply(
    pkt: radius.RadiusPacket,
    secret: bytes,
    criteria: aaa.DisconnectCriteria,
    ended: int,
    host: str,
) -> bytes:
    log.info("Disconnect-Request from %s for %s: %d sessions ended", host, _show(criteria), ended)
    if not ended:
        return aaa.dae_reply(pkt, radius.ERROR_SESSION_NOT_FOUND, secret)
    return aaa.dae_reply(pkt, None, secret)


def criteria_to_json(c: aaa.DisconnectCriteria) -> dict[str, Any]:
    """The criteria as the arguments of the worker link's ``dae`` command (``DaeRequest``)."""
    return DaeRequest.of(c).to_json()


def criteria_from_json(req: dict[str, Any]) -> aaa.DisconnectCriteria:
    """The inverse of ``criteria_to_json`` (``DaeRequest.from_json``); ValueError with the
    reason for a malformed request (the worker link refuses it)."""
    try:
        return DaeRequest.from_json(req).criteria()
    except RecordError as exc:
        raise ValueError(str(exc)) from None


def _show(c: aaa.DisconnectCriteria) -> str:
    parts: Iterable[str] = (
        f"{k}={v}"
        for k, v in (
            ("user", c.user),
            ("session", c.session_id),
            ("ip", c.framed_ip),
            ("ipv6-prefix", c.framed_ipv6_prefix),
            ("interface-id", show_interface_id(c.framed_interface_id)),
        )
        if v is not None
    )
    return " ".join(parts)


def show_interface_id(iid: bytes | None) -> str | None:
    """An interface identifier as FreeRADIUS writes Framed-Interface-Id (``ifid_ntoa``:
    four colon-separated 16-bit groups in hex, ``211:2233:4455:6677``), so that a log line
    can be found with the value from the accounting detail file."""
    if iid is None:
        return None
    return ":".join(f"{int.from_bytes(iid[i : i + 2], 'big'):x}" for i in range(0, len(iid), 2))
