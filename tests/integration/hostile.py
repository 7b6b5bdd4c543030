"""A misbehaving SSTP client for the abuse tests, run inside the client namespace.

It drives the package's sans-I/O ``ClientSession`` over a blocking TLS socket, so a test
can stop, cut or bend the handshake anywhere: drop the connection the moment
authentication succeeds, renegotiate LCP on an open session, send IPv6 inside an IPv4
frame, announce a huge MRU and send oversized unknown packets. Each scenario prints one
JSON line::

    python3 -m tests.integration.hostile auth-drop --host H --ca-file F --count 20
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from sstpd.proto.ppp.link import PppClientConfig
from sstpd.proto.session import (
    AuthFailed,
    AuthSucceeded,
    ClientSession,
    Event,
    IpReceived,
    SessionClosed,
    SessionOpened,
)
from sstpd.proto.sstp.binding import cert_hashes as hashes_of
from tests.integration.client_tool import checksum, icmp_echo, ipv4, is_echo_reply, udp


class Raw:
    """One connection; ``events`` collects everything the session reported."""

    def __init__(
        self,
        a: argparse.Namespace,
        *,
        user: str | None = None,
        password: str | None = None,
        mru: int = 1500,
    ) -> None:
        src = (a.source, 0) if getattr(a, "source", "") else None
        raw = socket.create_connection((a.host, a.port), timeout=10, source_address=src)
        ctx = ssl.create_default_context(cafile=a.ca_file)
        self.sock = ctx.wrap_socket(raw, server_hostname=a.host)
        der = self.sock.getpeercert(binary_form=True)
        assert der is not None
        now = time.monotonic()
        self.session = ClientSession(
            host=a.host,
            ppp_config=PppClientConfig(
                username=user or a.user,
                password=password or a.password,
                auth_methods=tuple(a.auth.split(",")),
                mru=mru,
            ),
            cert_hashes=hashes_of(der),
            random=os.urandom,
            now=now,
        )
        self.session.start(now)
        self.events: list[Event] = []
        self.raw_in: list[bytes] = []  # SSTP bytes as received (for the reject checks)
        self.eof = False
        self.flush()

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and not self.eof:
            try:
                self.sock.sendall(data)
            except OSError:
                self.eof = True

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def step(self, timeout: float) -> None:
        s = self.session
        t = s.get_timer()
        now = time.monotonic()
        wait = timeout if t is None else max(0.0, min(timeout, t - now))
        self.sock.settimeout(max(wait, 0.001))
        try:
            data: bytes | None = self.sock.recv(65536)
        except TimeoutError:
            data = None
        except (ssl.SSLError, OSError):
            data = b""
        now = time.monotonic()
        if data is None:
            s.handle_timer(now)
        elif not data:
            self.eof = True
            s.abort_connection("connection lost", now)
        else:
            self.raw_in.append(data)
            s.receive_data(data, now)
        self.flush()
        self.events += s.pop_events()

    def until(self, pred: Callable[[Event], bool], timeout: float = 15.0) -> Event | None:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for ev in self.events[seen:]:
                if pred(ev):
                    return ev
            seen = len(self.events)
            if self.eof or self.session.closed:
                return None
            self.step(min(0.2, deadline - time.monotonic()))
        return None

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.eof:
            self.step(min(0.1, deadline - time.monotonic()))

    def cut(self) -> None:
        """Drop the TCP connection without a TLS close_notify or an SSTP goodbye."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def ping(self, count: int = 2) -> int:
        link = self.session.link
        local = self.session.local_address
        peer = self.session.peer_address
        assert local is not None and peer is not None, link.phase
        got = 0
        for seq in range(count):
            self.session.send_ip(icmp_echo(local, peer, 99, seq, b"hostile" * 4))
            self.flush()
            ev = self.until(
                lambda e, q=seq: isinstance(e, IpReceived) and is_echo_reply(e.packet, 99, q),
                3.0,
            )
            got += ev is not None
        return got


def opened(ev: Event) -> bool:
    return isinstance(ev, SessionOpened)


def authed(ev: Event) -> bool:
    return isinstance(ev, AuthSucceeded | AuthFailed)


def sstp_data(frame: bytes) -> bytes:
    return struct.pack("!BBH", 0x10, 0, 4 + len(frame)) + frame


def scenario_auth_drop(a: argparse.Namespace) -> dict[str, Any]:
    """Authenticate, then cut the connection the moment the CHAP Success arrives."""
    done = 0
    for _ in range(a.count):
        r = Raw(a)
        ev = r.until(authed)
        done += isinstance(ev, AuthSucceeded)
        r.cut()
    return {"authenticated": done}


def scenario_auth_stall(a: argparse.Namespace) -> dict[str, Any]:
    """Authenticate, then go silent (no IPCP) until the server gives up."""
    r = Raw(a)
    ev = r.until(authed)
    t0 = time.monotonic()
    # read nothing, answer nothing: only wait for the server to close the connection
    r.sock.settimeout(a.wait)
    closed_by_server = False
    try:
        while True:
            if not r.sock.recv(65536):
                closed_by_server = True
                break
    except TimeoutError:
        pass
    except (ssl.SSLError, OSError):
        closed_by_server = True
    return {
        "authenticated": isinstance(ev, AuthSucceeded),
        "closed_by_server": closed_by_server,
        "after": round(time.monotonic() - t0, 2),
    }


def scenario_reneg(a: argparse.Namespace) -> dict[str, Any]:
    """Open a session, then renegotiate LCP ``count`` times (each re-authenticates)."""
    r = Raw(a)
    if r.until(opened) is None:
        return {"opened": False, "events": [repr(e) for e in r.events]}
    first = str(r.session.local_address)
    link = r.session.link
    rounds = 0
    addresses = []
    for _ in range(a.count):
        now = time.monotonic()
        link.lcp.down(now)  # Opened -> Starting (this-layer-down), then a fresh request
        link.lcp.up(now)
        r.session._pump(now)
        r.flush()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not link.is_network_up and not r.eof:
            r.step(0.1)
        if not link.is_network_up:
            break
        rounds += 1
        addresses.append(str(link.local_address))
    replies = r.ping() if link.is_network_up else 0
    if a.cut:
        r.cut()
    else:
        r.session.disconnect(time.monotonic())
        r.flush()
        r.until(lambda e: isinstance(e, SessionClosed), 5)
        r.sock.close()
    return {
        "opened": True,
        "first": first,
        "rounds": rounds,
        "addresses": addresses,
        "replies": replies,
    }


def ipv6_packet(src_tail: bytes) -> bytes:
    """An ICMPv6 echo request whose bytes 12..16 (inside the IPv6 source) are ``src_tail``."""
    src = b"\xfd\x00\x00\x00" + src_tail + b"\x00" * 7 + b"\x02"  # packet bytes 8..24
    dst = b"\xfd\x00" + b"\x00" * 13 + b"\x01"
    body = struct.pack("!BBHHH", 128, 0, 0, 1, 1) + b"v6-in-v4"
    hdr = struct.pack("!IHBB", 0x60000000, len(body), 58, 64) + src + dst
    pkt = hdr + body
    assert pkt[12:16] == src_tail
    return pkt


def scenario_v6_in_v4(a: argparse.Namespace) -> dict[str, Any]:
    """IPv6 carried with PPP protocol 0x0021, on the fast path and on the slow path."""
    r = Raw(a)
    if r.until(opened) is None:
        return {"opened": False}
    local = r.session.local_address
    assert local is not None
    pkt = ipv6_packet(local.packed)
    for _ in range(a.count):
        r.send_raw(sstp_data(b"\xff\x03\x00\x21" + pkt))  # the I/O layer's fast path
        r.send_raw(sstp_data(b"\x00\x21" + pkt))  # no ACFC-less header: the slow path
    replies = r.ping()  # the session itself still works (and everything was processed)
    r.session.disconnect(time.monotonic())
    r.flush()
    r.until(lambda e: isinstance(e, SessionClosed), 5)
    r.sock.close()
    return {"opened": True, "local": str(local), "sent": 2 * a.count, "replies": replies}


def tcp_segment(src: IPv4Address, dst: IPv4Address, seq: int, payload: bytes, ident: int) -> bytes:
    """A TCP ACK segment with data (to the discard port, nobody listens): the kind the
    server's offload path coalesces when several follow each other."""
    th = struct.pack("!HHIIBBHHH", 40000, 9, seq, 1, 5 << 4, 0x10, 1000, 0, 0) + payload
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 6, len(th))
    th = th[:16] + struct.pack("!H", checksum(pseudo + th)) + th[18:]
    return ipv4(src, dst, 6, th, ident)


def fastpath_frames(local: IPv4Address, peer: IPv4Address, port: int, rnd: int) -> list[bytes]:
    """One burst through the server's data path: coalescable TCP segments with hostile
    frames between them, on the fast path (full PPP header) and the slow one (compressed).

    Delivered to the UDP sink: ``ok-R``, ``slow-R``, ``over-R`` (a frame longer than its
    IP length: the kernel trims it). Dropped by sstpd as spoofed: 5 (two foreign sources,
    two IP versions that are not 4, one on each path, and a spoofed TCP segment in the
    middle of the run). Accepted by sstpd but dropped by the kernel: ``trunc`` (IP length
    beyond the frame)."""
    fast = b"\xff\x03\x00\x21"
    slow = b"\x00\x21"
    foreign = IPv4Address("192.0.2.7")
    seq = 1_000_000 * (rnd + 1)
    segs = [
        tcp_segment(local, peer, seq + 700 * i, bytes([65 + i]) * 700, 300 + i) for i in range(4)
    ]
    spoof_seg = tcp_segment(foreign, peer, seq + 700, b"X" * 700, 301)
    bad_version = bytes([0x55]) + udp(local, peer, 5, port, b"v5")[1:]
    trunc = bytearray(udp(local, peer, 5, port, f"trunc-{rnd}".encode()))
    struct.pack_into("!H", trunc, 2, len(trunc) + 100)  # says 100 bytes more than it has
    over = udp(local, peer, 5, port, f"over-{rnd}".encode()) + b"\xee" * 40
    out = [
        fast + segs[0],
        fast + udp(foreign, peer, 5, port, b"spoofed"),
        fast + segs[1],
        fast + spoof_seg,
        fast + bad_version,
        fast + segs[2],
        fast + bytes(trunc),
        fast + segs[3],
        fast + over,
        fast + udp(local, peer, 5, port, f"ok-{rnd}".encode()),
        slow + udp(local, peer, 5, port, f"slow-{rnd}".encode()),
        slow + udp(foreign, peer, 5, port, b"spoofed-slow"),
        slow + bytes([0x65]) + udp(local, peer, 5, port, b"v6")[1:],
    ]
    return [sstp_data(f) for f in out]


def scenario_fastpath(a: argparse.Namespace) -> dict[str, Any]:
    """Hostile frames before the session is open, then bursts mixing them with TCP
    segments the server coalesces; the session must survive (ping after)."""
    r = Raw(a)
    if r.until(authed) is None:
        return {"opened": False}
    early = IPv4Address("10.255.0.9")  # before IPCP there is no address: any source
    for i in range(3):  # authenticated, not open yet: all dropped (dropped_not_open)
        r.send_raw(sstp_data(b"\xff\x03\x00\x21" + udp(early, early, 5, a.sink_port, b"e%d" % i)))
    if r.until(opened) is None:
        return {"opened": False}
    local, peer = r.session.local_address, r.session.peer_address
    assert local is not None and peer is not None
    for rnd in range(a.count):
        r.send_raw(b"".join(fastpath_frames(local, peer, a.sink_port, rnd)))  # one TLS write
        r.run_for(0.2)
    replies = r.ping()
    r.session.disconnect(time.monotonic())
    r.flush()
    r.until(lambda e: isinstance(e, SessionClosed), 5)
    r.sock.close()
    return {"opened": True, "local": str(local), "replies": replies}


def scenario_big_reject(a: argparse.Namespace) -> dict[str, Any]:
    """MRU 65535, then an unknown LCP code and an unknown protocol of maximal size."""
    r = Raw(a, mru=65535)
    # wait for LCP to open (authentication starts right after)
    deadline = time.monotonic() + 10
    link = r.session.link
    while time.monotonic() < deadline and link.lcp.state.name != "OPENED":
        r.step(0.1)
    max_ppp = 4095 - 4 - 4  # the largest PPP packet one SSTP packet carries
    unknown_code = bytes([0x42, 1]) + struct.pack("!H", max_ppp) + b"\xaa" * (max_ppp - 4)
    r.send_raw(sstp_data(b"\xff\x03\xc0\x21" + unknown_code))
    unknown_proto = b"\xff\x03\x80\x57" + b"\xbb" * max_ppp  # IPv6CP: we do not run it
    r.send_raw(sstp_data(unknown_proto))
    before = len(b"".join(r.raw_in))
    r.run_for(1.5)
    received = b"".join(r.raw_in)[before:]
    # the rejects as the server sent them: SSTP data packets carrying LCP code 7 or 8
    rejects = []
    stream = b"".join(r.raw_in)
    i = stream.index(b"\r\n\r\n") + 4  # after the HTTP response head
    while i + 4 <= len(stream):
        length = struct.unpack("!H", stream[i + 2 : i + 4])[0] & 0x0FFF
        pkt = stream[i : i + length]
        if pkt[1] & 1 == 0 and pkt[4:8] == b"\xff\x03\xc0\x21" and pkt[8] in (7, 8):
            rejects.append({"code": pkt[8], "sstp_length": length})
        i += max(length, 4)
    ev = r.until(opened, 15)
    ok = ev is not None
    replies = r.ping() if ok else 0
    if ok:
        r.session.disconnect(time.monotonic())
        r.flush()
        r.until(lambda e: isinstance(e, SessionClosed), 5)
    r.sock.close()
    return {"rejects": rejects, "opened": ok, "replies": replies, "bytes_after": len(received)}


def scenario_flood(a: argparse.Namespace) -> dict[str, Any]:
    """``--raw`` TCP connections that never start TLS and ``--slow`` TLS connections that
    send their HTTP request one byte a second, from ``--source`` (comma-separated: round
    robin), held ``--wait`` seconds. Prints one line when everything is connected (with
    how long that took), one at the end."""
    import resource
    import select

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sources = [x for x in a.source.split(",") if x] or [""]
    t_start = time.monotonic()

    def dial(i: int) -> socket.socket:
        src = sources[i % len(sources)]
        return socket.create_connection(
            (a.host, a.port), timeout=5, source_address=(src, 0) if src else None
        )

    socks: list[socket.socket] = []
    failed = 0
    for i in range(a.raw):
        try:
            socks.append(dial(i))
        except OSError:
            failed += 1
    ctx = ssl.create_default_context(cafile=a.ca_file)
    for i in range(a.slow):
        try:
            socks.append(ctx.wrap_socket(dial(i), server_hostname=a.host))
        except OSError:
            failed += 1
    print(
        json.dumps(
            {
                "connected": len(socks),
                "failed": failed,
                "seconds": round(time.monotonic() - t_start, 2),
            }
        ),
        flush=True,
    )
    request = b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n"
    poller = select.poll()
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        poller.register(s, select.POLLIN)
        by_fd[s.fileno()] = s
    lifetimes: list[float] = []
    t0 = time.monotonic()
    sent = 0
    next_byte = t0
    while time.monotonic() - t0 < a.wait and by_fd:
        now = time.monotonic()
        if now >= next_byte and sent < len(request):
            for fd, s in list(by_fd.items()):
                if isinstance(s, ssl.SSLSocket):
                    try:
                        s.send(request[sent : sent + 1])
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        pass
                    except OSError:
                        poller.unregister(fd)
                        del by_fd[fd]
                        lifetimes.append(now - t0)
            sent += 1
            next_byte = now + 1.0
        for fd, _ in poller.poll(200):
            s = by_fd.get(fd)
            if s is None:
                continue
            try:
                data = s.recv(4096)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                poller.unregister(fd)
                del by_fd[fd]
                lifetimes.append(time.monotonic() - t0)
    for s in socks:
        s.close()
    lifetimes.sort()
    return {
        "connected": len(socks),
        "failed": failed,
        "closed_by_server": len(lifetimes),
        "max_lifetime": round(lifetimes[-1], 2) if lifetimes else None,
    }


def scenario_guess(a: argparse.Namespace) -> dict[str, Any]:
    """``--count`` logins with a wrong password (``--parallel`` at a time); for each:
    seconds until the failure answer, or "refused" when the server closed before
    answering. ``events`` has (seconds since the start, outcome) in completion order."""
    import threading

    results: list[Any] = [None] * a.count
    events: list[tuple[float, str]] = []
    lock = threading.Lock()
    todo = iter(range(a.count))
    start = time.monotonic()

    def worker() -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            t0 = time.monotonic()
            try:
                r = Raw(a, password=f"wrong-{i}")
                ev = r.until(authed, 20)
                r.cut()
            except OSError:
                ev = None
            if isinstance(ev, AuthFailed):
                res: Any = round(time.monotonic() - t0, 3)
                kind = "failed"
            elif isinstance(ev, AuthSucceeded):
                res = kind = "accepted"
            else:
                res = kind = "refused"
            with lock:
                results[i] = res
                events.append((round(time.monotonic() - start, 3), kind))

    threads = [threading.Thread(target=worker) for _ in range(max(1, a.parallel))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": results, "events": events, "seconds": round(time.monotonic() - start, 3)}


SCENARIOS = {
    "auth-drop": scenario_auth_drop,
    "auth-stall": scenario_auth_stall,
    "reneg": scenario_reneg,
    "v6-in-v4": scenario_v6_in_v4,
    "big-reject": scenario_big_reject,
    "fastpath": scenario_fastpath,
    "flood": scenario_flood,
    "guess": scenario_guess,
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="alice-secret")
    p.add_argument("--auth", default="mschapv2")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--wait", type=float, default=30.0)
    p.add_argument("--cut", action="store_true")
    p.add_argument("--raw", type=int, default=0)
    p.add_argument("--slow", type=int, default=0)
    p.add_argument("--source", default="")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--sink-port", type=int, default=9999)
    a = p.parse_args()
    print(json.dumps(SCENARIOS[a.scenario](a)), flush=True)


if __name__ == "__main__":
    main()
