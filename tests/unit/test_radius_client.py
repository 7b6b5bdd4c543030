"""The asyncio RADIUS client and DAE listener against scripted UDP peers on 127.0.0.1
(ephemeral ports): retransmission, failover and dead marks, forged answers, DAE rules."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

from sstpd.aio.dae import DaeServer
from sstpd.aio.radius import RadiusClient, RadiusTimeout, _grow_receive_buffer
from sstpd.config import RadiusConfig, RadiusServer
from sstpd.proto import aaa, radius
from sstpd.proto.ppp.auth import PAP, VerifyRequest
from sstpd.proto.radius import Attr, Code, RadiusPacket

SECRET = b"s"
Answer = Callable[[RadiusPacket, bytes], bytes | None]


class Peer(asyncio.DatagramProtocol):
    """Answers each request with ``answer(request, raw)`` (None = stay silent)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.seen: list[RadiusPacket] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pkt = radius.decode(data)
        self.seen.append(pkt)
        out = self.answer(pkt, data)
        if out is not None:
            self.transport.sendto(out, addr)


async def start_peer(answer: Answer) -> tuple[Peer, int]:
    loop = asyncio.get_running_loop()
    peer = Peer(answer)
    tr, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
    _grow_receive_buffer(tr)  # the 300-request burst below must not be dropped
    return peer, tr.get_extra_info("sockname")[1]


def accept(message_auth: bool = True) -> Answer:
    def answer(req: RadiusPacket, _raw: bytes) -> bytes:
        code = Code.ACCESS_ACCEPT if req.code == Code.ACCESS_REQUEST else Code.ACCOUNTING_RESPONSE
        return radius.sign_reply(
            RadiusPacket(code, req.identifier), req.authenticator, SECRET, message_auth=message_auth
        )

    return answer


def config(**kw: Any) -> RadiusConfig:
    return RadiusConfig(**{"timeout": 0.2, "retries": 1, "dead_time": 60.0, **kw})


REQ = VerifyRequest(PAP, "u", "u", password="p")


def build_access(ident: int, auth: bytes, secret: bytes, _delay: int) -> Any:
    return aaa.access_request(
        REQ, identifier=ident, authenticator=auth, secret=secret, nas=aaa.NasInfo()
    )


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_failover_marks_dead_and_skips() -> None:
    async def main() -> None:
        silent, p1 = await start_peer(lambda r, d: None)
        _good, p2 = await start_peer(accept())
        servers = (RadiusServer("127.0.0.1", p1, SECRET), RadiusServer("127.0.0.1", p2, SECRET))
        c = RadiusClient(config(), servers, "authentication")
        await c.open()
        ans, _, srv = await c.request(build_access, "t")
        assert ans.code == Code.ACCESS_ACCEPT and srv.port == p2
        assert len(silent.seen) == 2  # retries + 1
        assert len({p.identifier for p in silent.seen}) == 2  # a new identifier each time
        await c.request(build_access, "t")
        assert len(silent.seen) == 2  # dead: skipped
        c.close()

    run(main())


def test_forged_answer_is_ignored_and_genuine_one_taken() -> None:
    async def main() -> None:
        def forged_then_real(req: RadiusPacket, raw: bytes) -> bytes:
            fake = RadiusPacket(Code.ACCESS_ACCEPT, req.identifier)
            peer.transport.sendto(
                radius.sign_reply(fake, req.authenticator, SECRET, message_auth=False), addr[0]
            )
            return accept()(req, raw)

        addr: list[Any] = []
        peer, port = await start_peer(forged_then_real)
        orig = peer.datagram_received

        def capture(data: bytes, a: Any) -> None:
            addr[:] = [a]
            orig(data, a)

        peer.datagram_received = capture  # type: ignore[method-assign]
        c = RadiusClient(config(), (RadiusServer("127.0.0.1", port, SECRET),), "authentication")
        await c.open()
        ans, _, _ = await c.request(build_access, "t")
        assert ans.get(Attr.MESSAGE_AUTHENTICATOR) is not None
        assert c.dropped == 1
        c.close()

    run(main())


def test_no_server_answers_raises_within_the_timeout() -> None:
    async def main() -> None:
        _, port = await start_peer(accept(message_auth=False))  # answers never verify
        c = RadiusClient(config(), (RadiusServer("127.0.0.1", port, SECRET),), "authentication")
        await c.open()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(RadiusTimeout):
            await c.request(build_access, "t")
        assert loop.time() - t0 < 1.0  # 2 x 0.2 s
        c.close()

    run(main())


@pytest.mark.parametrize(("mode", "ok"), [("no", True), ("auto", True), ("yes", False)])
def test_message_authenticator_modes(mode: str, ok: bool) -> None:
    async def main() -> None:
        _, port = await start_peer(accept(message_auth=False))
        cfg = config(require_message_authenticator=mode)
        c = RadiusClient(cfg, (RadiusServer("127.0.0.1", port, SECRET),), "authentication")
        await c.open()
        try:
            await c.request(build_access, "t")
            assert ok
        except RadiusTimeout:
            assert not ok
        c.close()

    run(main())


def test_accounting_retransmission_carries_delay() -> None:
    async def main() -> None:
        def second_only(req: RadiusPacket, raw: bytes) -> bytes | None:
            return accept()(req, raw) if len(peer.seen) >= 2 else None

        peer, port = await start_peer(second_only)
        c = RadiusClient(
            config(timeout=1.1), (RadiusServer("127.0.0.1", port, SECRET),), "accounting"
        )
        await c.open()
        rec = aaa.AcctRecord("x", "u", aaa.ACCT_START)

        def build(ident: int, _a: bytes, secret: bytes, delay: int) -> Any:
            return aaa.accounting_request(
                aaa.AcctRecord(**{**rec.__dict__, "delay": delay}),
                identifier=ident,
                secret=secret,
                nas=aaa.NasInfo(),
            )

        await c.request(build, "t")
        assert peer.seen[0].get(Attr.ACCT_DELAY_TIME) is None
        assert peer.seen[1].get_int(Attr.ACCT_DELAY_TIME) == 1
        c.close()

    run(main())


# ---------------------------------------------------------------- DAE


def test_dae_rules() -> None:
    async def main() -> None:
        ended: list[aaa.DisconnectCriteria] = []

        def disconnect(c: aaa.DisconnectCriteria) -> int:
            ended.append(c)
            return 1 if c.user == "alice" else 0

        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        cfg = RadiusConfig(
            dae_listen=("127.0.0.1", port), dae_clients=(RadiusServer("127.0.0.1", 0, SECRET),)
        )
        dae = DaeServer(cfg, disconnect)
        await dae.open()
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Cl(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                replies.put_nowait(data)

        tr, _ = await loop.create_datagram_endpoint(Cl, remote_addr=("127.0.0.1", port))

        async def ask(
            attrs: list[tuple[int, bytes]], secret: bytes = SECRET
        ) -> RadiusPacket | None:
            pkt = RadiusPacket(Code.DISCONNECT_REQUEST, len(ended) + 7, attributes=attrs)
            data = radius.sign_request(pkt, secret)
            tr.sendto(data)
            try:
                raw = await asyncio.wait_for(replies.get(), 0.5)
            except TimeoutError:
                return None
            ans = radius.decode(raw)
            assert (
                radius.verify_reply(
                    raw, ans, pkt.authenticator, SECRET, require_message_authenticator=True
                )
                == ""
            )
            return ans

        ack = await ask([(Attr.USER_NAME, b"alice")])
        assert ack is not None and ack.code == Code.DISCONNECT_ACK
        # a retransmission (same identifier and authenticator) gets the same answer and
        # does not run the disconnect again
        again = RadiusPacket(Code.DISCONNECT_REQUEST, 7, attributes=[(Attr.USER_NAME, b"alice")])
        tr.sendto(radius.sign_request(again, SECRET))
        assert radius.decode(await asyncio.wait_for(replies.get(), 2)) == ack
        assert len(ended) == 1
        nak = await ask([(Attr.USER_NAME, b"bob"), (Attr.FRAMED_IP_ADDRESS, bytes([10, 0, 0, 1]))])
        assert nak is not None and nak.code == Code.DISCONNECT_NAK
        assert nak.get_int(Attr.ERROR_CAUSE) == radius.ERROR_SESSION_NOT_FOUND
        assert ended[-1].framed_ip == IPv4Address("10.0.0.1")
        missing = await ask([(Attr.NAS_IDENTIFIER, b"x")])
        assert missing is not None and missing.get_int(Attr.ERROR_CAUSE) == 402
        assert await ask([(Attr.USER_NAME, b"alice")], b"wrong") is None
        tr.sendto(b"\x28\x01\x00\x05garbage")
        await asyncio.sleep(0.1)
        assert dae.dropped == 2 and replies.empty()
        n = len(ended)
        tr.close()
        dae.close()
        assert n == 2  # the missing-attribute and dropped requests ended nothing

    run(main())


def test_mixed_address_families() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        good = Peer(accept())
        tr, _ = await loop.create_datagram_endpoint(lambda: good, local_addr=("::1", 0))
        p6 = tr.get_extra_info("sockname")[1]
        silent, p4 = await start_peer(lambda r, d: None)
        servers = (
            RadiusServer("127.0.0.1", p4, SECRET),
            RadiusServer("0:0::1", p6, SECRET),  # answers come from "::1": same server
        )
        c = RadiusClient(config(), servers, "authentication")
        await c.open()
        ans, _, srv = await c.request(build_access, "t")
        assert ans.code == Code.ACCESS_ACCEPT and srv.port == p6 and len(silent.seen) == 2
        c.close()
        tr.close()

    run(main())


def test_more_than_256_requests_in_flight_wait_for_identifiers() -> None:
    async def main() -> None:
        held: list[tuple[RadiusPacket, Any]] = []

        def slow(req: RadiusPacket, raw: bytes) -> None:
            held.append((req, None))

        peer, port = await start_peer(slow)
        c = RadiusClient(
            config(timeout=10.0, retries=0), (RadiusServer("127.0.0.1", port, SECRET),), "auth"
        )
        await c.open()
        tasks = [asyncio.create_task(c.request(build_access, "t")) for _ in range(300)]
        for _ in range(500):
            if len(peer.seen) >= 256:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert len(peer.seen) == 256  # every identifier in use, the rest wait
        peer.answer = accept()
        for i, (req, _) in enumerate(held):  # answer the first 256 now
            peer.transport.sendto(accept()(req, b""), ("127.0.0.1", c_port(c)))
            if i % 32 == 31:
                await asyncio.sleep(0.01)  # stay within the socket's receive buffer
        results = await asyncio.gather(*tasks)
        assert len(results) == 300 and len(peer.seen) == 300
        c.close()

    run(main())


def c_port(c: RadiusClient) -> int:
    return int(next(iter(c.transports.values())).get_extra_info("sockname")[1])
