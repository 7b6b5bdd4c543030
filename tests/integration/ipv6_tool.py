"""IPv6 scenarios, run in the client namespace like ``client_tool``; one JSON line out.

The client is the package's ``Tunnel`` with its PPP link told to run IPV6CP next to IPCP
the way ``PppClientConfig.ipv6`` does (the client side of issue 12 lands separately), and
IPv6 frames collected raw: the test builds its own ICMPv6 and reads the server's Router
Advertisement itself, so what is checked is the server's behaviour, not the client's.

    python3 -m tests.integration.ipv6_tool ping6 --host H --ca-file F --target6 A ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import time
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from sstpd.aio import client_tunnel
from sstpd.aio.client_protocol import ClientOptions, ClientProtocol, ssl_context
from sstpd.aio.client_tunnel import Tunnel
from sstpd.proto.ipv6 import nd
from sstpd.proto.ipv6.packet import (
    NEXT_HEADER_ICMPV6,
    Ipv6Header,
    checksum,
    encode_ipv6,
    pseudo_header,
)
from sstpd.proto.ppp import link as ppp
from sstpd.proto.ppp.frame import Code, Protocol
from sstpd.proto.ppp.ipcp import IpcpClientHandler
from sstpd.proto.session import SessionOpened
from tests.integration.client_tool import checksum as checksum4
from tests.integration.client_tool import icmp_echo, ipv4, is_echo_reply

ECHO_REQUEST, ECHO_REPLY = 128, 129


def echo6(src: IPv6Address, dst: IPv6Address, ident: int, seq: int) -> bytes:
    body = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq) + b"sstpd-ipv6" * 4
    total = checksum(pseudo_header(src, dst, len(body), NEXT_HEADER_ICMPV6) + body)
    body = body[:2] + struct.pack("!H", total) + body[4:]
    return encode_ipv6(Ipv6Header(src, dst, NEXT_HEADER_ICMPV6), body)


def is_echo6_reply(pkt: bytes, src: IPv6Address, ident: int, seq: int) -> bool:
    return (
        len(pkt) >= 48
        and pkt[6] == NEXT_HEADER_ICMPV6
        and pkt[8:24] == src.packed
        and pkt[40] == ECHO_REPLY
        and struct.unpack("!HH", pkt[44:48]) == (ident, seq)
    )


class Ipv6Protocol(ClientProtocol):
    """``ClientProtocol`` whose PPP link runs IPV6CP; IPv6 frames go to ``packets6``.
    ``reject_ipcp``: IPV6CP alone, the server's IPCP answered with LCP Protocol-Reject
    (a Windows client with IPv4 turned off on the VPN interface)."""

    reject_ipcp = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.up: asyncio.Future[ppp.Network6Up] = self.loop.create_future()
        self.packets6: asyncio.Queue[bytes] = asyncio.Queue()
        super().connection_made(transport)
        session = self.session
        link = session.link
        link.ipv6_enabled = True
        start_network = link._start_network
        reject = self.reject_ipcp

        def start(now: float) -> None:
            if reject:
                link.phase = ppp.Phase.NETWORK
            else:
                start_network(now)
            link._open_ipv6cp(now)

        link._start_network = start  # type: ignore[method-assign]
        if reject:
            receive = link.receive_payload

            def no_ipcp(protocol: int, payload: bytes, now: float) -> None:
                if protocol != Protocol.IPCP:
                    receive(protocol, payload, now)
                else:
                    rejected = struct.pack("!H", protocol) + payload
                    link.lcp.send_packet(Code.PROTOCOL_REJECT, rejected)

            link.receive_payload = no_ipcp  # type: ignore[method-assign]
            self._receive = receive
        on_ppp_event = session._on_ppp_event

        def record(ev: object, now: float) -> None:
            if isinstance(ev, ppp.Network6Up) and not self.up.done():
                self.up.set_result(ev)
            on_ppp_event(ev, now)

        def take6(packet: bytes, now: float) -> bool:
            self.packets6.put_nowait(packet)
            return True

        session._on_ppp_event = record  # type: ignore[method-assign]
        session._ip6_from_peer = take6  # type: ignore[method-assign]

    def open_ipcp_late(self) -> None:
        """An IPv6-only client turns IPv4 back on: it answers IPCP from now on and asks
        for it itself (the server's IPCP, given up, is in Stopped and opens on it)."""
        link = self.session.link
        link.receive_payload = self._receive  # type: ignore[method-assign]
        handler = IpcpClientHandler(request_dns=link.config.request_dns, listener=link)
        link._ipcp_handler = handler
        link._open_ipcp(handler, self.loop.time())
        self._after_input()


# Tunnel.open builds its protocol from its module's name: every tunnel of this tool speaks IPv6
client_tunnel.ClientProtocol = Ipv6Protocol  # type: ignore[attr-defined]


class Ipv6Client:
    """One tunnel whose link runs IPV6CP."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        proto = tunnel.proto
        assert isinstance(proto, Ipv6Protocol)
        self.proto = proto
        self.up = proto.up
        self.packets6 = proto.packets6
        self.prefix: IPv6Network | None = None
        self.address: IPv6Address | None = None
        self.link_local: IPv6Address | None = None
        self.answered = 0  # echo requests answered by answer_echos

    @classmethod
    async def open(cls, opts: ClientOptions) -> Ipv6Client:
        return cls(await Tunnel.open(opts))

    def send6(self, packet: bytes) -> None:
        proto = self.tunnel.proto
        proto.session.connection.send_ppp(b"\xff\x03\x00\x57" + packet)
        proto._after_input()

    async def configure(self, timeout: float = 10.0) -> None:
        """Wait for IPV6CP and the server's RA; form prefix::<IPV6CP identifier>."""
        up = await asyncio.wait_for(self.up, timeout)
        self.link_local = IPv6Address(b"\xfe\x80" + bytes(6) + up.local_iid)
        deadline = time.monotonic() + timeout
        while self.prefix is None:
            pkt = await asyncio.wait_for(self.packets6.get(), deadline - time.monotonic())
            try:
                header, kind, message = nd.unwrap(pkt)
                if kind != nd.TYPE_RA:
                    continue
                ra = nd.decode_ra(header, message)
            except Exception:
                continue
            for p in ra.prefixes:
                if p.autonomous and p.prefix.prefixlen == 64:
                    self.prefix = p.prefix
                    self.address = IPv6Address(p.prefix.network_address.packed[:8] + up.local_iid)

    async def ping6(
        self, dst: IPv6Address, ident: int, count: int = 3, src: IPv6Address | None = None
    ) -> int:
        assert self.address is not None
        src = src or self.address
        got = 0
        for seq in range(count):
            self.send6(echo6(src, dst, ident, seq))
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                try:
                    pkt = await asyncio.wait_for(self.packets6.get(), deadline - time.monotonic())
                except TimeoutError:
                    break
                if is_echo6_reply(pkt, dst, ident, seq):
                    got += 1
                    break
        return got

    async def answer_echos(self) -> None:
        """Answer ICMPv6 echo requests to this tunnel's address (pings from behind the
        server, which reach the tunnel only if its /64 routes to the right worker)."""
        assert self.address is not None
        me = self.address
        while True:
            pkt = await self.packets6.get()
            if len(pkt) < 48 or pkt[6] != NEXT_HEADER_ICMPV6 or pkt[40] != ECHO_REQUEST:
                continue
            if pkt[24:40] != me.packed:
                continue
            src = IPv6Address(pkt[8:24])
            body = bytearray(pkt[40 : 40 + struct.unpack("!H", pkt[4:6])[0]])
            body[0], body[2:4] = ECHO_REPLY, b"\0\0"
            total = checksum(pseudo_header(me, src, len(body), NEXT_HEADER_ICMPV6) + bytes(body))
            body[2:4] = struct.pack("!H", total)
            self.send6(encode_ipv6(Ipv6Header(me, src, NEXT_HEADER_ICMPV6), bytes(body)))
            self.answered += 1

    async def ping4(self, ident: int) -> int:
        t = self.tunnel
        t.send_ip(icmp_echo(t.local_address, t.peer_address, ident, 0, b"sstpd-v4" * 4))
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                pkt = await t.recv_ip(deadline - time.monotonic())
            except TimeoutError:
                break
            if is_echo_reply(pkt, ident, 0):
                return 1
        return 0


def options(a: argparse.Namespace) -> ClientOptions:
    return ClientOptions(
        host=a.host,
        port=a.port,
        user=a.user,
        password=a.password,
        ca_file=a.ca_file,
        auth_methods=("mschapv2",),
        timeout=a.timeout,
    )


async def scenario_ping6(a: argparse.Namespace) -> dict[str, object]:
    """One tunnel: its /64, pings to the server and the host behind it, a spoofed source,
    an RS answered, an RS flood."""
    c = await Ipv6Client.open(options(a))
    await c.configure()
    assert c.prefix is not None and c.link_local is not None
    server6 = await c.ping6(IPv6Address(a.server6), 1, a.count)
    host6 = await c.ping6(IPv6Address(a.host6), 2, a.count)
    spoofed = IPv6Address(a.spoofed)
    spoofed_replies = await c.ping6(IPv6Address(a.host6), 3, a.count, src=spoofed)
    # a Router Solicitation, then a flood of them: one RA at most per 3 s
    while not c.packets6.empty():
        c.packets6.get_nowait()
    await asyncio.sleep(3.1)
    rs = nd.wrap(c.link_local, nd.ALL_ROUTERS, nd.encode_rs(nd.RouterSolicitation()))
    for _ in range(a.rs_flood):
        c.send6(rs)
    await asyncio.sleep(1.0)
    ras = 0
    while not c.packets6.empty():
        pkt = c.packets6.get_nowait()
        if len(pkt) > 40 and pkt[40] == nd.TYPE_RA:
            ras += 1
    v4 = await c.ping4(9)
    result = {
        "prefix": str(c.prefix),
        "address": str(c.address),
        "server6_replies": server6,
        "host6_replies": host6,
        "spoofed_replies": spoofed_replies,
        "ras_after_rs_flood": ras,
        "v4_replies": v4,
    }
    if a.hold:
        print(json.dumps(result), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, input)
    await c.tunnel.close()
    return result


async def scenario_many6(a: argparse.Namespace) -> dict[str, object]:
    """``--sessions`` dual-stack tunnels at once, each pinging over IPv4 and IPv6."""
    results = await asyncio.gather(
        *(Ipv6Client.open(options(a)) for _ in range(a.sessions)), return_exceptions=True
    )
    clients = [r for r in results if isinstance(r, Ipv6Client)]
    errors = [repr(r) for r in results if not isinstance(r, Ipv6Client)]
    configured = await asyncio.gather(*(c.configure(30.0) for c in clients), return_exceptions=True)
    errors += [repr(r) for r in configured if isinstance(r, BaseException)]
    ok = [c for c, r in zip(clients, configured, strict=True) if r is None]
    v6 = await asyncio.gather(
        *(c.ping6(IPv6Address(a.server6), 100 + i, 1) for i, c in enumerate(ok))
    )
    v4 = await asyncio.gather(*(c.ping4(300 + i) for i, c in enumerate(ok)))
    answered = 0
    if a.hold:  # the tunnels answer pings to their addresses until a stdin line
        # "iids": each tunnel's own IPV6CP interface identifier (the server's
        # Framed-Interface-Id for it), hex
        iids = [c.link_local.packed[8:].hex() for c in ok if c.link_local is not None]
        held = {"open": len(ok), "addresses": [str(c.address) for c in ok], "iids": iids}
        print(json.dumps(held), flush=True)
        answering = [asyncio.ensure_future(c.answer_echos()) for c in ok]
        await asyncio.get_running_loop().run_in_executor(None, input)
        for t in answering:
            t.cancel()
        answered = sum(c.answered for c in ok)
    await asyncio.gather(*(c.tunnel.close() for c in clients))
    return {
        "opened": len(clients),
        "configured": len(ok),
        "errors": errors[:5],
        "prefixes": sorted({str(c.prefix) for c in ok}),
        "v6_replies": sum(v6),
        "v4_replies": sum(v4),
        "answered": answered,
    }


async def scenario_exhaust6(a: argparse.Namespace) -> dict[str, object]:
    """``--sessions`` tunnels one after the other: which got IPv6 (RA within 5 s), and
    whether each still reaches the server over IPv4."""
    clients = []
    with_ipv6 = v4 = 0
    for i in range(a.sessions):
        c = await Ipv6Client.open(options(a))
        clients.append(c)
        try:
            await c.configure(5.0)
            with_ipv6 += 1
        except TimeoutError:
            pass
        v4 += await c.ping4(500 + i)
    rejected = [c.tunnel.proto.session.link.ipv6cp for c in clients]
    states = sorted({f.state.name if f is not None else "-" for f in rejected})
    if a.hold:
        print(json.dumps({"opened": len(clients), "ipv6": with_ipv6}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, input)
    await asyncio.gather(*(c.tunnel.close() for c in clients))
    return {"opened": len(clients), "ipv6": with_ipv6, "v4_replies": v4, "ipv6cp": states}


async def open_v6only(a: argparse.Namespace) -> Ipv6Client:
    """A tunnel that Protocol-Rejects IPCP and runs IPV6CP alone, configured (its /64
    from the server's RA): how ``v6only`` and ``v6then4`` begin."""
    Ipv6Protocol.reject_ipcp = True
    loop = asyncio.get_running_loop()
    opts = options(a)
    ctx = ssl_context(opts)
    _, proto = await loop.create_connection(
        lambda: Ipv6Protocol(loop, opts), opts.host, opts.port, ssl=ctx, server_hostname=opts.host
    )
    assert isinstance(proto, Ipv6Protocol)
    # the client side never opens without IPCP: a Tunnel around the protocol all the same
    none = IPv4Address("0.0.0.0")
    c = Ipv6Client(Tunnel(proto, SessionOpened(none, none, (), None)))
    await c.configure(30.0)
    return c


async def scenario_v6only(a: argparse.Namespace) -> dict[str, object]:
    """One tunnel that Protocol-Rejects IPCP and runs IPV6CP alone: its /64 and pings
    over IPv6, then (``--hold``) again after the stdin line, to show it stayed up."""
    c = await open_v6only(a)
    ipcp = c.proto.session.link.ipcp
    result: dict[str, object] = {
        "prefix": str(c.prefix),
        "ipcp": ipcp.state.name if ipcp else "-",
        "server6_replies": await c.ping6(IPv6Address(a.server6), 1, a.count),
        "host6_replies": await c.ping6(IPv6Address(a.host6), 2, a.count),
    }
    if a.hold:
        print(json.dumps(result), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, input)
        result["host6_replies_after"] = await c.ping6(IPv6Address(a.host6), 3, a.count)
    await c.tunnel.close()
    return result


async def answer_echos4(t: Tunnel) -> None:
    """Answer ICMP echo requests to the tunnel's IPv4 address (pings from the server's
    side, which reach the tunnel only if the daemon routes the address to the session)."""
    me = t.local_address  # the client's side: local is its own address, peer the server's
    while True:
        pkt = await t.recv_ip()
        ihl = (pkt[0] & 0x0F) * 4
        if pkt[0] >> 4 != 4 or pkt[9] != 1 or len(pkt) < ihl + 8 or pkt[ihl] != 8:
            continue
        if pkt[16:20] != me.packed:
            continue
        total = struct.unpack("!H", pkt[2:4])[0]
        msg = bytearray(b"\0\0\0\0" + pkt[ihl + 4 : total])
        msg[2:4] = struct.pack("!H", checksum4(bytes(msg)))
        t.send_ip(ipv4(me, IPv4Address(pkt[12:16]), 1, bytes(msg)))


async def scenario_v6then4(a: argparse.Namespace) -> dict[str, object]:
    """IPv6-only first (IPCP Protocol-Rejected, pings over IPv6), then IPCP after all:
    the address the server gives, a ping to the server's tunnel address (its reply is
    routed back by that address), and (``--hold``) echo requests to the address
    answered until the stdin line."""
    c = await open_v6only(a)
    proto = c.proto
    result: dict[str, object] = {
        "prefix": str(c.prefix),
        "host6_replies": await c.ping6(IPv6Address(a.host6), 1, a.count),
    }
    await asyncio.sleep(a.v4_after)
    proto.open_ipcp_late()
    opened = await asyncio.wait_for(proto.opened, 20.0)
    t = Tunnel(proto, opened)
    result["address"] = str(t.local_address)
    result["server"] = str(t.peer_address)
    result["v4_replies"] = sum([await Ipv6Client(t).ping4(100 + i) for i in range(a.count)])
    result["host6_replies_after"] = await c.ping6(IPv6Address(a.host6), 2, a.count)
    if a.hold:
        print(json.dumps(result), flush=True)
        answering = asyncio.ensure_future(answer_echos4(t))
        await asyncio.get_running_loop().run_in_executor(None, input)
        answering.cancel()
    await c.tunnel.close()
    return result


SCENARIOS = {
    "ping6": scenario_ping6,
    "many6": scenario_many6,
    "exhaust6": scenario_exhaust6,
    "v6only": scenario_v6only,
    "v6then4": scenario_v6then4,
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="alice-secret")
    p.add_argument("--ca-file")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--server6", default="2001:db8:77::1")
    p.add_argument("--host6", default="2001:db8:ff::2")
    p.add_argument("--spoofed", default="2001:db8:77:ff::5")
    p.add_argument("--rs-flood", type=int, default=50)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--v4-after", type=float, default=1.0, help="v6then4: seconds before IPCP")
    p.add_argument("--hold", action="store_true", help="wait for a stdin line before closing")
    a = p.parse_args()
    result = asyncio.run(SCENARIOS[a.scenario](a))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONASYNCIODEBUG", "0")
    raise SystemExit(main())
