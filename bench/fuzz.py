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
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from sstpd.errors import HttpError, ParseError
from sstpd.proto import mschap, proxy, webfront
from sstpd.proto.ppp.frame import Packet, decode_frame, decode_options
from sstpd.proto.ppp.link import PppServer, PppServerConfig
from sstpd.proto.sstp.http import RequestParser
from sstpd.proto.sstp.packets import PacketReader, decode_control
from tests.unit.test_session import Pair

EXPECTED = (ParseError, HttpError)
# targets that must not raise at all, not even ParseError (state machines fed from the wire)
_RAISE_NOTHING = ("server_stream", "server_open", "ppp_server")


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


def split_packets(stream: bytes) -> list[bytes]:
    """SSTP packets of a stream that starts after the HTTP head."""
    out = []
    i = 0
    while i + 4 <= len(stream):
        n = ((stream[i + 2] & 0x0F) << 8) | stream[i + 3]
        out.append(stream[i : i + n])
        i += max(n, 4)
    return out


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
    pool = [head, *packets, *frames, *proxy_seeds, *web_seeds]
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
        ("http", http, [head], 0.15),
        ("sstp", sstp, [*packets, *controls], 0.15),
        ("ppp", ppp, [*frames, *ppp_packets], 0.15),
        ("proxy", proxy_target, proxy_seeds, 0.10),
        ("webfront", web, web_seeds, 0.10),
        ("server_stream", server_stream, [sstp_stream], 0.10),
        ("server_open", server_open, open_seeds, 0.10),
        ("ppp_server", ppp_server, [b"\x7e".join(frames)], 0.15),
    ]
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
