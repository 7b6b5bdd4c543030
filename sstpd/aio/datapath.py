"""The I/O half of the data path: the TUN device's packets in batches, and the SSTP side's
coalesced writes. Shared by the daemon (``TunPump``) and ``sstpd connect``.

One wake-up of the TUN fd reads up to ``TUN_BATCH`` packets (``read_batch``); each
connection's share goes out with one ``transport.write`` (``send_batch``: one TLS record
per batch instead of one per packet). What the bytes are (the 8-byte SSTP + PPP prefix)
is ``sstpd.proto.datapath``'s; the other direction, peer -> TUN, is the fast path in
``aio.protocol``.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from sstpd.aio.stats import Stats
from sstpd.proto.session import Counters, ip6_prefix, ip_prefix

if TYPE_CHECKING:
    from sstpd.aio.connection import ServerProtocol
    from sstpd.aio.server import Server

TUN_BATCH = 64  # packets read per wake-up of the TUN fd
TUN_READ_SIZE = 65536  # larger than any MTU: one read is one whole packet


def read_batch(fd: int) -> list[bytes]:
    """Up to ``TUN_BATCH`` packets, as many as the (non-blocking) fd has ready."""
    out = []
    for _ in range(TUN_BATCH):
        try:
            out.append(os.read(fd, TUN_READ_SIZE))
        except OSError:  # BlockingIOError: drained; anything else: try at the next wake-up
            break
    return out


def encode_batch(packets: list[bytes]) -> bytes:
    """SSTP data packets carrying ``packets`` (IPv4 or IPv6 by the version nibble; the
    TUN carries both), joined for one write."""
    parts = []
    for p in packets:
        parts.append(ip6_prefix(len(p)) if p[0] >> 4 == 6 else ip_prefix(len(p)))
        parts.append(p)
    return b"".join(parts)


def count_sent(counters: Counters, packets: list[bytes]) -> None:
    counters.tx_packets += len(packets)
    counters.tx_bytes += sum(len(p) for p in packets)
    v6 = [len(p) for p in packets if p[0] >> 4 == 6]
    if v6:
        counters.tx6_packets += len(v6)
        counters.tx6_bytes += sum(v6)


def send_batch(transport: asyncio.Transport, counters: Counters, packets: list[bytes]) -> None:
    """One write for the batch; the counters count the IP bytes."""
    transport.write(encode_batch(packets))
    count_sent(counters, packets)


class TunPump:
    """The daemon's TUN device: packets the kernel routes into it go to the session whose
    tunnel address is their destination (``Server.by_ip``) or whose /64 holds it
    (``Server.by_prefix6``, keyed by the destination's first 8 bytes); packets from
    sessions are written to it."""

    def __init__(self, fd: int, server: Server, stats: Stats) -> None:
        self.fd = fd
        self.server = server
        self.stats = stats

    def write(self, packet: bytes) -> None:
        """One packet from a session (the slow path; the fast path writes ``fd`` itself)."""
        try:
            os.write(self.fd, packet)
        except OSError:
            self.stats.tun_no_route += 1

    def readable(self) -> None:
        by_ip, by_prefix6 = self.server.by_ip, self.server.by_prefix6
        pending: dict[ServerProtocol, list[bytes]] = {}
        for pkt in read_batch(self.fd):
            version = pkt[0] >> 4 if pkt else 0
            if version == 4:
                proto = by_ip.get(pkt[16:20])
            elif version == 6 and len(pkt) >= 40:
                proto = by_prefix6.get(pkt[24:32])
            else:
                proto = None
            if proto is None:
                self.stats.tun_no_route += 1
                continue
            lst = pending.get(proto)
            if lst is None:
                lst = pending[proto] = []
            lst.append(pkt)
        limit = self.server.config.limits.session_buffer
        for proto, packets in pending.items():
            tr = proto.transport
            if tr is None or tr.get_write_buffer_size() > limit:
                proto.session.counters.dropped_overflow += len(packets)
                continue
            send_batch(tr, proto.session.counters, packets)
