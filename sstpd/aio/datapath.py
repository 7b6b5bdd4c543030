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
from collections.abc import Callable, Mapping
from typing import Protocol

from sstpd.aio.stats import Stats
from sstpd.proto.datapath import (
    IPV4_DESTINATION,
    IPV6_DESTINATION,
    Counters,
    Family,
    data_prefix,
    encode_ip_packet,
    ip_prefix,
)

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
        parts.append(data_prefix(len(p), Family.IPV6) if p[0] >> 4 == 6 else ip_prefix(len(p)))
        parts.append(p)
    return b"".join(parts)


def send_batch(
    transport: asyncio.Transport,
    counters: Counters,
    packets: list[bytes],
    *,
    record_per_packet: bool = False,
) -> None:
    """One write for the batch (or one per packet: the shape of clients such as
    openconnect, for tests and benchmarks); the counters count the IP bytes."""
    if record_per_packet:
        write = transport.write
        for p in packets:
            write(encode_ip_packet(p, Family.IPV6 if p[0] >> 4 == 6 else Family.IPV4))
    else:
        transport.write(encode_batch(packets))
    counters.tx_packets += len(packets)
    counters.tx_bytes += sum(len(p) for p in packets)
    v6 = [len(p) for p in packets if p[0] >> 4 == 6]
    if v6:
        counters.tx6_packets += len(v6)
        counters.tx6_bytes += sum(v6)


class _Counted(Protocol):
    @property
    def counters(self) -> Counters: ...


class Peer(Protocol):
    """What the pump needs of a connection (``aio.connection.ServerProtocol``)."""

    @property
    def transport(self) -> asyncio.Transport | None: ...
    @property
    def session(self) -> _Counted: ...


class TunPump:
    """The daemon's TUN device: packets the kernel routes into it go to the connection
    whose tunnel address is their destination (``routes``: the registry's ``by_ip``) or,
    IPv6, whose /64 holds it (``routes6``: ``by_prefix6``, keyed by the destination's first
    8 bytes); packets from sessions are written to it. ``buffer_limit()``: the send-buffer
    size above which a connection's batch is dropped (``limits.session_buffer``, live)."""

    def __init__(
        self,
        fd: int,
        routes: Mapping[bytes, Peer],
        stats: Stats,
        buffer_limit: Callable[[], int],
        routes6: Mapping[bytes, Peer] | None = None,
    ) -> None:
        self.fd = fd
        self.routes = routes
        self.routes6: Mapping[bytes, Peer] = routes6 if routes6 is not None else {}
        self.stats = stats
        self.buffer_limit = buffer_limit

    def write(self, packet: bytes) -> None:
        """One packet from a session (the slow path; the fast path writes ``fd`` itself)."""
        try:
            os.write(self.fd, packet)
        except OSError:
            self.stats.tun_no_route += 1

    def readable(self) -> None:
        by_ip, by_prefix6 = self.routes, self.routes6
        pending: dict[Peer, list[bytes]] = {}
        for pkt in read_batch(self.fd):
            version = pkt[0] >> 4 if pkt else 0
            if version == 4:
                proto = by_ip.get(pkt[IPV4_DESTINATION : IPV4_DESTINATION + 4])
            elif version == 6 and len(pkt) >= IPV6_DESTINATION + 16:
                proto = by_prefix6.get(pkt[IPV6_DESTINATION : IPV6_DESTINATION + 8])
            else:
                proto = None
            if proto is None:
                self.stats.tun_no_route += 1
                continue
            lst = pending.get(proto)
            if lst is None:
                lst = pending[proto] = []
            lst.append(pkt)
        limit = self.buffer_limit()
        for proto, packets in pending.items():
            tr = proto.transport
            if tr is None or tr.get_write_buffer_size() > limit:
                proto.session.counters.dropped_overflow += len(packets)
                continue
            send_batch(tr, proto.session.counters, packets)
