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
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from sstpd.aio.stats import Stats
from sstpd.proto.datapath import (
    IPV4_DESTINATION,
    IPV6_DESTINATION,
    Counters,
    Family,
    data_prefix,
    ip_prefix,
)
from sstpd.proto.gro import F_NEEDS_CSUM, PLAIN, VNET_HDR_LEN

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


def _prefix(p: bytes | memoryview) -> bytes:
    """The SSTP + PPP prefix of one packet: IPv6 by its version nibble, else IPv4."""
    return data_prefix(len(p), Family.IPV6) if p[0] >> 4 == 6 else ip_prefix(len(p))


def encode_batch(packets: Sequence[bytes | memoryview]) -> bytes:
    """SSTP data packets carrying ``packets`` (IPv4 or IPv6 by the version nibble; the
    TUN carries both), joined for one write."""
    parts: list[bytes | memoryview] = []
    for p in packets:
        parts.append(_prefix(p))
        parts.append(p)
    return b"".join(parts)


def send_batch(
    transport: asyncio.Transport,
    counters: Counters,
    packets: Sequence[bytes | memoryview],
    *,
    record_per_packet: bool = False,
) -> None:
    """One write for the batch (or one per packet: the shape of clients such as
    openconnect, for tests and benchmarks); the counters count the IP bytes."""
    if record_per_packet:
        write = transport.write
        for p in packets:
            write(_prefix(p) + p)
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
    size above which a connection's batch is dropped (``limits.session_buffer``, live).
    ``vnet_hdr``: the device was opened with offload (``aio.tun``), so every packet read
    or written starts with a virtio_net_hdr; no offload is enabled for reads, so it never
    announces GSO or a checksum left to do (one that did is dropped, never forwarded)."""

    def __init__(
        self,
        fd: int,
        routes: Mapping[bytes, Peer],
        stats: Stats,
        buffer_limit: Callable[[], int],
        *,
        routes6: Mapping[bytes, Peer] | None = None,
        vnet_hdr: bool = False,
    ) -> None:
        self.fd = fd
        self.routes = routes
        self.routes6: Mapping[bytes, Peer] = routes6 if routes6 is not None else {}
        self.stats = stats
        self.buffer_limit = buffer_limit
        self.vnet_hdr = vnet_hdr

    def write(self, packet: bytes) -> None:
        """One packet from a session (the slow path; the fast path writes ``fd`` itself)."""
        try:
            if self.vnet_hdr:
                os.writev(self.fd, (PLAIN, packet))
            else:
                os.write(self.fd, packet)
        except OSError:
            self.stats.tun_no_route += 1

    def readable(self) -> None:
        by_ip, by_prefix6 = self.routes, self.routes6
        pending: dict[Peer, list[bytes | memoryview]] = {}
        skip = VNET_HDR_LEN if self.vnet_hdr else 0
        dst, dst6 = IPV4_DESTINATION + skip, IPV6_DESTINATION + skip
        for pkt in read_batch(self.fd):
            version = pkt[skip] >> 4 if len(pkt) > skip else 0
            if version == 4:
                proto = by_ip.get(pkt[dst : dst + 4])
            elif version == 6 and len(pkt) >= dst6 + 16:
                proto = by_prefix6.get(pkt[dst6 : dst6 + 8])
            else:
                proto = None
            if proto is None or (skip and (pkt[0] & F_NEEDS_CSUM or pkt[1])):
                self.stats.tun_no_route += 1
                continue
            lst = pending.get(proto)
            if lst is None:
                lst = pending[proto] = []
            lst.append(memoryview(pkt)[skip:] if skip else pkt)
        limit = self.buffer_limit()
        for proto, packets in pending.items():
            tr = proto.transport
            if tr is None or tr.get_write_buffer_size() > limit:
                proto.session.counters.dropped_overflow += len(packets)
                continue
            send_batch(tr, proto.session.counters, packets)
