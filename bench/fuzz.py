#!/usr/bin/env python3
"""Mutation fuzzing of every decoder and of the server state machines; prints the counts.

    python3 bench/fuzz.py                 # 1,000,000 inputs (a few minutes)
    python3 bench/fuzz.py --count 50000 --seed 7

Inputs are mutations (bit flips, byte changes, insertions, deletions, truncations,
splices, repeats, random bytes) of valid seeds recorded from a real MS-CHAPv2 handshake
between the package's client and server sessions. Targets:

* ``http``: the SSTP request parser (may raise HttpError only), fed in two pieces;
* ``sstp``: SSTP control message decoder and the packet reader (ParseError only);
* ``ppp``: PPP frame, packet and option decoders (ParseError only);
* ``proxy`` / ``webfront``: the PROXY protocol and web-front decoders;
* ``server_stream``: a fresh ServerSession fed the client's whole byte stream, mutated,
  in random pieces (nothing may raise);
* ``server_open``: a copy of an open ServerSession (tunnel up) fed mutated SSTP packets
  (LCP, IPCP, CHAP, IPv4, SSTP control; nothing may raise);
* ``server_open6``: a copy of an open dual-stack ServerSession (IPV6CP up) fed mutated
  SSTP packets carrying IPv6 (RS, NS, UDP in and outside its /64) and IPV6CP;
* ``ppp_server``: a fresh PPP authenticator fed a mutated sequence of the client's frames.

Any other exception is an unexpected one: the script prints the first few with the input
and exits 1. Protocol code is deterministic here (fixed random source, time passed in).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import random
import sys
import time
import traceback
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from sstpd.errors import HttpError, ParseError
from sstpd.proto import aaa, clienthello, dhcp, mschap, proxy, radius, webfront
from sstpd.proto.datapath import Family, data_prefix
from sstpd.proto.inet import checksum
from sstpd.proto.ipv6 import nd
from sstpd.proto.ipv6.packet import (
    Ipv6Header,
    classify,
    encode_ipv6,
    pseudo_header,
    upper_layer,
)
from sstpd.proto.ppp.eap import EapPacket, EapServer, MsChapV2Message
from sstpd.proto.ppp.frame import (
    Code,
    Option,
    Packet,
    decode_frame,
    decode_options,
    encode_options,
)
from sstpd.proto.ppp.fsm import Fsm
from sstpd.proto.ppp.ipv6cp import Ipv6cpHandler
from sstpd.proto.ppp.link import PppServer, PppServerConfig
from sstpd.proto.session import ServerSession
from sstpd.proto.sstp.http import RequestParser
from sstpd.proto.sstp.packets import PacketReader, decode_control
from tests.unit import test_clienthello as T_hello
from tests.unit import test_dhcp as T_dhcp
from tests.unit import test_ipv6_responder as T_nd
from tests.unit import test_ppp_eap as T_eap
from tests.unit import test_ppp_ipv6cp as T_v6cp
from tests.unit import test_radius as T_rad
from tests.unit import test_session_ipv6 as T_s6
from tests.unit.test_session import Pair

EXPECTED = (ParseError, HttpError)
# targets that must not raise at all, not even ParseError (state machines fed from the wire)
_RAISE_NOTHING = (
    "server_stream",
    "server_open",
    "server_open6",
    "ppp_server",
    "eap_server",
    "ipv6_nd",
    "ipv6cp",
)


def record_handshake() -> tuple[list[bytes], Pair]:
    """The client's byte chunks of a full MS-CHAPv2 handshake, and the open pair."""
    p = Pair()
    chunks: list[bytes] = []
    for _ in range(40):
        data = p.client.data_to_send()
        if data:
            chunks.append(data)
            p.server.receive_data(data, p.now)
        back = p.server.data_to_send()
        if back:
            p.client.receive_data(back, p.now)
        p.server.pop_events()
        p.client.pop_events()
        if not data and not back:
            break
    assert p.server.is_open, "the seed handshake did not open"
    return chunks, p


def open_dual_stack() -> tuple[ServerSession, list[bytes]]:
    """An open dual-stack ServerSession (IPV6CP up, RA sent) and SSTP data packets for it:
    a Router and a Neighbor Solicitation, UDP from inside its /64 and from outside, an
    IPV6CP Configure-Request."""
    p = T_s6.Pair6()
    p.run()
    prefix = p.server.prefix6
    assert prefix is not None, "the dual-stack seed session did not open IPv6"
    ll = p.client_ll
    packets = [
        nd.wrap(ll, nd.ALL_ROUTERS, nd.encode_rs(nd.RouterSolicitation())),
        nd.wrap(ll, T_s6.SERVER6, nd.encode_ns(nd.NeighborSolicitation(T_s6.SERVER6))),
        T_s6.udp6(prefix[0x1234]),
        T_s6.udp6("2001:db8:ffff::1"),
    ]
    seeds = [data_prefix(len(x), Family.IPV6) + x for x in packets]
    ipv6cp = b"\xff\x03\x80\x57" + bytes.fromhex("0101000e010a5c4a1ef0937b22d1")
    seeds.append(b"\x10\x00" + (4 + len(ipv6cp)).to_bytes(2, "big") + ipv6cp)
    return p.server, seeds


def split_packets(stream: bytes) -> list[bytes]:
    """SSTP packets of a stream that starts after the HTTP head."""
    out = []
    i = 0
    while i + 4 <= len(stream):
        n = ((stream[i + 2] & 0x0F) << 8) | stream[i + 3]
        out.append(stream[i : i + n])
        i += max(n, 4)
    return out


def split_by_length(data: bytes, at: int = 2) -> list[bytes]:
    """Packets laid end to end, each cut at its own 16-bit length field (at ``at``)."""
    out = []
    i = 0
    while i < len(data):
        n = max(int.from_bytes(data[i + at : i + at + 2], "big"), 4)
        out.append(data[i : i + n])
        i += n
    return out


def repair_ipv4(data: bytes) -> bytes:
    """A mutated IPv4/UDP packet with its header checksum recomputed and no UDP
    checksum, so that mutations reach the DHCP decoder instead of the checksum check."""
    ihl = 4 * (data[0] & 0x0F) if data else 0
    if ihl < 20 or len(data) < ihl + 8:
        return data
    out = bytearray(data)
    out[10:12] = b"\0\0"
    out[10:12] = checksum(bytes(out[:ihl])).to_bytes(2, "big")
    out[ihl + 6 : ihl + 8] = b"\0\0"
    return bytes(out)


def repair_icmpv6(data: bytes) -> bytes:
    """A mutated IPv6 packet carrying ICMPv6 with the ICMPv6 checksum recomputed."""
    if len(data) < 44 or data[6] != 58:
        return data
    body = bytearray(data[40 : 40 + int.from_bytes(data[4:6], "big")])
    if len(body) < 4:
        return data
    body[2:4] = b"\0\0"
    src, dst = IPv6Address(data[8:24]), IPv6Address(data[24:40])
    body[2:4] = checksum(pseudo_header(src, dst, len(body), 58) + bytes(body)).to_bytes(2, "big")
    return data[:40] + bytes(body) + data[40 + len(body) :]


class Extra:
    """Seeds and targets for the decoders added after the first fuzz run: EAP, DHCP,
    IPv6/ND, IPV6CP, RADIUS and the TLS ClientHello. Seeds are encodings of valid packets
    (the EAP-MS-CHAP-V2 vector, a Windows DHCPINFORM, ND messages, a MikroTik IPV6CP
    request, signed RADIUS answers, captured ClientHellos)."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        wrong = T_eap.response(2, 2, "wrong")
        self.eap_streams = [
            T_eap.V_IDENTITY_RESP + T_eap.V_RESPONSE + T_eap.V_SUCCESS_RESP,
            T_eap.V_IDENTITY_RESP + wrong + bytes.fromhex("0203 0006 1a04"),
            T_eap.V_IDENTITY_RESP + wrong + T_eap.response(3, 3, "clientPass"),
        ]
        self.eap_seeds = [
            T_eap.V_IDENTITY_REQ,
            T_eap.V_IDENTITY_RESP,
            T_eap.V_CHALLENGE,
            T_eap.V_RESPONSE,
            T_eap.V_SUCCESS_REQ,
            T_eap.V_SUCCESS_RESP,
            T_eap.V_EAP_SUCCESS,
            wrong,
        ]
        self.dhcp_seeds = [
            T_dhcp.inform_packet(),
            T_dhcp.inform_packet(pad_to=0),
            T_dhcp.inform_packet(
                T_dhcp.inform(options={53: b"\x08", 121: bytes.fromhex("18c0a832")})
            ),
        ]
        client_ll = T_nd.CLIENT_LL
        ra = nd.session_advertisement(T_nd.PREFIX, mtu=1400, dns=T_nd.DNS, interval=3.0)
        self.ipv6_seeds = [
            T_nd.rs(),
            nd.wrap(client_ll, nd.ALL_ROUTERS, nd.encode_rs(nd.RouterSolicitation(bytes(6)))),
            nd.wrap(
                client_ll,
                T_nd.SERVER_LL,
                nd.encode_ns(nd.NeighborSolicitation(T_nd.SERVER_LL, bytes(6))),
            ),
            nd.wrap(
                IPv6Address("::"),
                IPv6Address("ff02::1:ff00:1"),
                nd.encode_ns(nd.NeighborSolicitation(T_nd.SERVER_GLOBAL)),
            ),
            nd.wrap(client_ll, T_nd.SERVER_LL, nd.encode_na(nd.NeighborAdvertisement(client_ll))),
            nd.advertise(T_nd.SERVER_IID, client_ll, ra),
            encode_ipv6(
                Ipv6Header(IPv6Address("2001:db8:0:7::5"), IPv6Address("2001:db8::53"), 17),
                bytes(16),
            ),
            encode_ipv6(
                Ipv6Header(client_ll, IPv6Address("ff02::1:2"), 0),
                bytes.fromhex("1100050200000100") + bytes(16),
            ),
        ]
        self.ipv6cp_seeds = [
            T_v6cp.MIKROTIK_REQUEST,
            Packet(Code.CONFIGURE_REQUEST, 1, encode_options([Option(1, T_v6cp.IID_B)])).encode(),
            Packet(
                Code.CONFIGURE_REQUEST,
                2,
                encode_options([Option(1, T_v6cp.IID_B), Option(2, b"\x00\x4f")]),
            ).encode(),
            Packet(Code.CONFIGURE_NAK, 1, encode_options([Option(1, T_v6cp.IID_B)])).encode(),
            Packet(Code.CONFIGURE_REJECT, 1, encode_options([Option(1, T_v6cp.IID_A)])).encode(),
            Packet(Code.CONFIGURE_ACK, 1, encode_options([Option(1, T_v6cp.IID_A)])).encode(),
            Packet(Code.TERMINATE_REQUEST, 3, b"").encode(),
        ]
        self.iid_random = T_v6cp.counter_random()
        answer, self.request = self._radius_answers()
        self.radius_seeds = [*answer, self.request]
        self.hello_seeds = [p.read_bytes() for p in sorted(T_hello.DATA.glob("*.bin"))] + [
            clienthello.encode(T_hello.windows_like(), fragment=200)
        ]

    @staticmethod
    def _radius_answers() -> tuple[list[bytes], bytes]:
        _, request = aaa.access_request(
            T_rad.CHAP_REQ,
            identifier=1,
            authenticator=T_rad.REQ_AUTH,
            secret=T_rad.SECRET,
            nas=aaa.NasInfo(),
        )
        reject = radius.RadiusPacket(radius.Code.ACCESS_REJECT, 1)
        reject.add_ms(radius.Ms.CHAP_ERROR, b"\x42E=691 R=1 C=00 V=3 M=bad")
        return [
            T_rad.accept(),
            T_rad.accept(keys=False, message_auth=False),
            radius.sign_reply(reject, T_rad.REQ_AUTH, T_rad.SECRET),
        ], request

    def targets(self) -> list[tuple[str, Callable[[bytes], None], list[bytes]]]:
        return [
            ("eap", self.eap, self.eap_seeds),
            ("eap_server", self.eap_server, self.eap_streams),
            ("dhcp", self.dhcp, self.dhcp_seeds),
            ("ipv6_nd", self.ipv6, self.ipv6_seeds),
            ("ipv6cp", self.ipv6cp, self.ipv6cp_seeds),
            ("radius", self.radius, self.radius_seeds),
            ("clienthello", self.clienthello, self.hello_seeds),
        ]

    def eap(self, data: bytes) -> None:
        with contextlib.suppress(ParseError):
            EapPacket.decode(data)
        MsChapV2Message.decode(data[5:])

    def eap_server(self, data: bytes) -> None:
        """A fresh authenticator fed a mutated client sequence: nothing may raise."""
        srv = EapServer(
            lambda p: p.encode(),
            lambda r: None,
            lookup=T_eap.USERS.get,
            random=T_eap.scripted_random(b"\x00", T_eap.V_AUTH_CHALLENGE),
            retries=self.rnd.randrange(3),
        )
        now = 0.0
        srv.start(now)
        for piece in split_by_length(data):
            try:
                packet = Packet.decode(piece)
            except ParseError:
                continue  # the PPP layer drops it before EAP sees it (the ppp target's job)
            srv.receive(packet, now)
            now += self.rnd.random() * 4
            if self.rnd.random() < 0.2:
                srv.handle_timer(now)
        srv.handle_timer(now + 1000.0)

    def dhcp(self, data: bytes) -> None:
        if self.rnd.random() < 0.75:
            data = repair_ipv4(data)
        dhcp.is_dhcp_request(data)
        with contextlib.suppress(ParseError):
            dhcp.decode_ipv4_udp(data)
        m = dhcp.parse_inform(data, T_dhcp.CLIENT)
        dhcp.build_ack(
            m,
            server=T_dhcp.SERVER,
            domain="corp.example",
            dns=(T_dhcp.SERVER,),
            routes=(IPv4Network("192.168.50.0/24"),),
        )

    def ipv6(self, data: bytes) -> None:
        """Classifier, responder and ND decoders (their ParseError suppressed): nothing
        else may raise."""
        if self.rnd.random() < 0.75:
            data = repair_icmpv6(data)
        upper_layer(data)
        verdict = classify(data, T_nd.PREFIX.network_address.packed[:8], T_nd.CLIENT_LL.packed)
        r = T_nd.responder()
        r.start(0.0)
        r.receive(data, 5.0 if verdict else 1.0)
        try:
            header, _, message = nd.unwrap(data)
        except ParseError:
            return
        for decode in (nd.decode_rs, nd.decode_ra, nd.decode_ns, nd.decode_na):
            with contextlib.suppress(ParseError):
                decode(header, message)  # type: ignore[operator]

    def ipv6cp(self, data: bytes) -> None:
        """Options decoded (ParseError suppressed), then an IPV6CP automaton fed the
        packets: nothing else may raise."""
        with contextlib.suppress(ParseError):
            decode_options(data[4:])
        fsm = Fsm(
            "IPV6CP",
            Ipv6cpHandler(
                random=self.iid_random,
                on_up=lambda: None,
                on_down=lambda: None,
                on_finished=lambda: None,
                local_iid=T_v6cp.IID_A,
                in_use=lambda iid: iid[0] == 0x42,
            ),
            lambda p: p.encode(),
        )
        fsm.open(0.0)
        fsm.up(0.0)
        for k, piece in enumerate(split_by_length(data)):
            fsm.receive(piece, float(k))
        fsm.handle_timer(100.0)

    def radius(self, data: bytes) -> None:
        """Decoded, checked against the request (also re-signed, so that the checks pass
        and the verdict is read out of whatever attributes the answer has)."""
        pkt = radius.decode(data)
        why = radius.verify_reply(
            data,
            pkt,
            T_rad.REQ_AUTH,
            T_rad.SECRET,
            require_message_authenticator=self.rnd.random() < 0.5,
        )
        radius.verify_request(data, pkt, T_rad.SECRET)
        if why and self.rnd.random() < 0.5:
            data = radius.sign_reply(
                pkt, T_rad.REQ_AUTH, T_rad.SECRET, message_auth=self.rnd.random() < 0.8
            )
            pkt = radius.decode(data)
            why = radius.verify_reply(
                data, pkt, T_rad.REQ_AUTH, T_rad.SECRET, require_message_authenticator=True
            )
        if not why:
            aaa.interpret(T_rad.CHAP_REQ, pkt, T_rad.SECRET, T_rad.REQ_AUTH)

    def clienthello(self, data: bytes) -> None:
        hello = clienthello.decode(data)
        if isinstance(hello, clienthello.ClientHello):
            hello.server_name, hello.alpn, hello.only_acme  # noqa: B018


def mutate(rnd: random.Random, seed: bytes, pool: list[bytes]) -> bytes:
    data = bytearray(seed)
    for _ in range(rnd.choice((1, 1, 1, 2, 3, 5))):
        op = rnd.randrange(9)
        n = len(data)
        if op == 0 and n:
            i = rnd.randrange(n)
            data[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and n:
            data[rnd.randrange(n)] = rnd.choice((0, 1, 0x7F, 0x80, 0xFF, rnd.randrange(256)))
        elif op == 2:
            i = rnd.randrange(n + 1)
            data[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 9)))
        elif op == 3 and n:
            i = rnd.randrange(n)
            del data[i : i + rnd.randrange(1, 17)]
        elif op == 4 and n:
            del data[rnd.randrange(n) :]
        elif op == 5:
            other = rnd.choice(pool)
            i = rnd.randrange(n + 1)
            j = rnd.randrange(len(other) + 1)
            data[i:] = other[j:]
        elif op == 6 and n:
            i = rnd.randrange(n)
            chunk = data[i : i + rnd.randrange(1, 64)]
            data[i:i] = chunk * rnd.randrange(1, 8)
        elif op == 7 and n >= 2:
            # a length field: big-endian 16 bits somewhere near the start
            i = rnd.randrange(min(n - 1, 12))
            v = rnd.choice((0, 1, 3, 4, 0xFFF, 0x1000, 0xFFFF, rnd.randrange(65536)))
            data[i : i + 2] = v.to_bytes(2, "big")
        elif op == 8:
            data = bytearray(rnd.randbytes(rnd.randrange(0, 80)))
    return bytes(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000, help="inputs in total")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    rnd = random.Random(a.seed)

    chunks, opened = record_handshake()
    stream = b"".join(chunks)
    head_end = stream.index(b"\r\n\r\n") + 4
    head, sstp_stream = stream[:head_end], stream[head_end:]
    packets = split_packets(sstp_stream)
    frames = [pkt[4:] for pkt in packets if pkt[1] & 1 == 0]
    controls = [pkt[4:] for pkt in packets if pkt[1] & 1]
    ppp_packets = [f[4:] for f in frames if len(f) > 4]
    proxy_seeds = [
        proxy.encode_v1(("192.0.2.7", 40000), ("198.51.100.1", 443)),
        proxy.encode_v2(("192.0.2.7", 40000), ("198.51.100.1", 443)),
        proxy.encode_v2(("2001:db8::7", 40000), ("2001:db8::1", 443)),
    ]
    web_seeds = [head, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"POST /a HTTP/1.0\r\n\r\nbody"]
    pool: list[bytes] = [head, *packets, *frames, *proxy_seeds, *web_seeds]
    nt = mschap.nt_password_hash("pw")
    ip = bytes.fromhex("45000054000040004001") + bytes(2) + IPv4Address("10.77.0.2").packed
    ip += IPv4Address("10.77.0.1").packed + bytes(64)
    open_seeds = [*packets, b"\x10\x00\x00\x5c\xff\x03\x00\x21" + ip]

    def http(data: bytes) -> None:
        cut = rnd.randrange(len(data) + 1)
        parser = RequestParser()
        if parser.feed(data[:cut]) is None:
            parser.feed(data[cut:])

    def sstp(data: bytes) -> None:
        with contextlib.suppress(ParseError):
            decode_control(data[4:] if len(data) > 4 and data[1] & 1 else data)
        reader = PacketReader()
        reader.feed(data)
        while reader.next_packet() is not None:
            pass

    def ppp(data: bytes) -> None:
        for decode in (decode_frame, Packet.decode, decode_options):
            with contextlib.suppress(ParseError):
                decode(data)  # type: ignore[operator]

    def proxy_target(data: bytes) -> None:
        proxy.parse(data)

    def web(data: bytes) -> None:
        webfront.classify(data)
        webfront.head_length(data)
        if webfront.head_length(data) is not None:
            webfront.rewrite_head(data[: webfront.head_length(data)], "192.0.2.7", "https")

    def server_stream(data: bytes) -> None:
        p = Pair.__new__(Pair)
        Pair.__init__(p)
        s = p.server
        now = 0.0
        i = 0
        while i < len(data):
            j = i + rnd.randrange(1, 600)
            s.receive_data(data[i:j], now)
            s.data_to_send()
            s.pop_events()
            now += rnd.random()
            if rnd.random() < 0.2:
                s.handle_timer(now + rnd.random() * 90)
            i = j
            if s.closed:
                break

    base = opened.server

    def server_open(data: bytes) -> None:
        s = copy.deepcopy(base)
        s.receive_data(data, 1.0)
        s.data_to_send()
        s.pop_events()
        s.handle_timer(100.0)
        s.abort_connection("fuzz", 101.0)

    base6, open6_seeds = open_dual_stack()

    def server_open6(data: bytes) -> None:
        s = copy.deepcopy(base6)
        s.receive_data(data, 10.0)
        s.data_to_send()
        s.pop_events()
        s.handle_timer(100.0)
        s.abort_connection("fuzz", 101.0)

    def ppp_server(data: bytes) -> None:
        srv = PppServer(
            PppServerConfig(local_address=IPv4Address("10.77.0.1")),
            lookup={"alice": nt}.get,
            assign_address=lambda user: IPv4Address("10.77.0.2"),
            random=lambda n: rnd.randbytes(n),
            now=0.0,
        )
        srv.lower_up(0.0)
        for k, frame in enumerate(data.split(b"\x7e")):  # 0x7E: frame separator here
            srv.receive_frame(frame, float(k))
            srv.frames_to_send()
            srv.pop_events()
        srv.handle_timer(1000.0)

    targets: list[tuple[str, Callable[[bytes], None], list[bytes], float]] = [
        ("http", http, [head], 0.10),
        ("sstp", sstp, [*packets, *controls], 0.10),
        ("ppp", ppp, [*frames, *ppp_packets], 0.10),
        ("proxy", proxy_target, proxy_seeds, 0.07),
        ("webfront", web, web_seeds, 0.07),
        ("server_stream", server_stream, [sstp_stream], 0.07),
        ("server_open", server_open, open_seeds, 0.07),
        ("server_open6", server_open6, open6_seeds, 0.05),
        ("ppp_server", ppp_server, [b"\x7e".join(frames)], 0.07),
    ]
    extra = Extra(rnd)
    targets += [(name, fn, seeds, 0.05) for name, fn, seeds in extra.targets()]
    pool += [seed for _, _, seeds in extra.targets() for seed in seeds]
    total = 0
    bad: list[str] = []
    t_all = time.monotonic()
    for name, fn, seeds, share in targets:
        n = int(a.count * share)
        t0 = time.monotonic()
        for _ in range(n):
            data = mutate(rnd, rnd.choice(seeds), pool)
            if name == "server_stream":
                data = head + data if rnd.random() < 0.9 else data
            try:
                fn(data)
            except EXPECTED if name not in _RAISE_NOTHING else ():  # noqa: B030
                pass
            except Exception:
                if len(bad) < 5:
                    bad.append(f"{name}: {data.hex()}\n{traceback.format_exc()}")
                else:
                    bad.append(name)
        total += n
        print(f"{name:14s} {n:9,d} inputs  {time.monotonic() - t0:7.1f} s", flush=True)
    print(
        f"{'total':14s} {total:9,d} inputs  {time.monotonic() - t_all:7.1f} s, "
        f"{len(bad)} unexpected exceptions (seed {a.seed})"
    )
    for b in bad[:5]:
        print(b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
