"""Userspace GRO for a TUN device opened with IFF_VNET_HDR (what wireguard-go does).

With ``IFF_VNET_HDR`` every read and write of the TUN device starts with a 10-byte
``struct virtio_net_hdr``. Writing one TCP "super-packet" with a GSO header instead of
many segments hands the kernel one skb for the whole run: one syscall, one trip through
IP and TCP, one ACK decision. ``coalesce`` finds such runs in a batch of IP packets
received from one peer; ``segment`` is the inverse (what the kernel's GSO does), used by
the tests to prove that nothing is lost or changed.

The coalescing rules are those of the kernel's own GRO (``tcp_gro_receive``) and
wireguard-go's ``tcpGRO``. Packets join the run of their flow when:

* IPv4 with a 20-byte header (no options), not a fragment, or IPv6 with TCP as the next
  header (no extension headers); the IP length field equals the packet length;
* TCP flags exactly ACK, or ACK|PSH (PSH ends the run); urgent pointer 0; payload > 0;
* same addresses and ports, same TOS/traffic class, TTL/hop limit, DF bit, flow label;
  same ACK number, window, header length and options (timestamps included);
* the sequence number continues the run; IPv4 IDs increase by one;
* every segment has the size of the first, except the last, which may be shorter (and
  ends the run); the super-packet stays within 65535 bytes of IP.

Everything else passes unchanged, in order, with an all-zero header (the kernel then
checks it as it would without offload). A TCP packet that does not qualify ends every
open run first, so no segment of a flow overtakes another. The super-packet's TCP
checksum holds only the pseudo-header sum (``VIRTIO_NET_HDR_F_NEEDS_CSUM``: the kernel
treats the rest as trusted, exactly as for a packet built by a local socket); the
segments' own checksums are not verified, which costs a full pass over every payload in
Python. The peer is authenticated and its stream integrity-protected by TLS, and
forwarded super-packets are re-segmented by the kernel with fresh checksums, so a peer
gains nothing it could not send with correct checksums.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

VNET_HDR_LEN = 10
F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_ECN = 0x80
MAX_IP = 65535  # an IPv4 total length (and the kernel's GSO limit for a TUN write)

_HDR = struct.Struct("<BBHHHH")  # little-endian: the device is set to TUNSETVNETLE
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_ACK, _ACK_PSH = 0x10, 0x18
# IPv4 + TCP from the TOS byte: TOS, total length, ID, (flags/fragment, TTL, protocol),
# addresses and ports (the flow), sequence, (ACK number, data offset), TCP flags, window,
# urgent pointer; the two checksums are skipped
_V4 = struct.Struct("!xBHH4s2x12sI5sB2s2x2s")
# IPv6 + TCP: (version, traffic class, flow label), payload length, (next header, hop
# limit), addresses and ports, then as above
_V6 = struct.Struct("!4sH2s36sI5sB2s2x2s")


@dataclass(frozen=True)
class VnetHdr:
    """``struct virtio_net_hdr`` (without ``num_buffers``)."""

    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    def encode(self) -> bytes:
        return _HDR.pack(
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> VnetHdr:
        if len(data) < VNET_HDR_LEN:
            raise ValueError(f"virtio_net_hdr needs {VNET_HDR_LEN} bytes, got {len(data)}")
        return cls(*_HDR.unpack_from(data))


PLAIN = VnetHdr().encode()  # a packet as it is: no GSO, checksum already complete

Buffer = bytes | bytearray | memoryview


def checksum_add(data: Buffer, acc: int = 0) -> int:
    """Ones'-complement sum of ``data`` (16-bit big-endian words) added to ``acc``,
    folded to 16 bits (not inverted)."""
    b = bytes(data)
    if len(b) & 1:
        b += b"\0"
    total: int = acc + sum(struct.unpack(f"!{len(b) // 2}H", b))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _pseudo(src: bytes, dst: bytes, length: int) -> int:
    """The TCP pseudo-header sum (RFC 793 for IPv4, RFC 8200 §8.1 for IPv6)."""
    if len(src) == 4:
        return checksum_add(src + dst + struct.pack("!HH", 6, length))
    return checksum_add(src + dst + struct.pack("!IxxxB", length, 6))


def ipv4_header_checksum(packet: bytearray) -> None:
    """Set the checksum of the IPv4 header at the start of ``packet``."""
    packet[10] = packet[11] = 0
    ihl = (packet[0] & 0x0F) * 4
    _U16.pack_into(packet, 10, ~checksum_add(packet[:ihl]) & 0xFFFF)


class _Run:
    """Segments of one flow being merged: the first packet's span and its parts."""

    __slots__ = (
        "gso",
        "hl",
        "iph",
        "mask",
        "n",
        "next_id",
        "next_seq",
        "parts",
        "psh",
        "sig",
        "size",
        "start",
        "step",
        "total",
        "want",
    )

    def __init__(
        self,
        parts: list[Buffer],
        start: int,
        iph: int,
        hl: int,
        gso: int,
        total: int,
        next_seq: int,
        next_id: int,
        sig: tuple[object, ...],
    ) -> None:
        self.parts = parts
        self.start = start
        self.iph = iph
        self.hl = hl
        self.gso = gso
        self.total = total
        self.next_seq = next_seq
        self.next_id = next_id
        self.sig = sig
        self.n = 1
        self.psh = False
        # the fast path's expectation (IPv4, ``expect``): the next full-sized segment's
        # header as one integer, its checksums masked out
        self.size = self.mask = self.want = self.step = 0

    def expect(self, buf: bytes | bytearray) -> None:
        """Derive the fast path's expectation from the run's first IPv4 segment: its
        IP and TCP header with the next ID and sequence number (``step`` advances both
        by one segment), both checksums masked."""
        s, hl = self.start, self.hl

        def bits(at: int, size: int) -> int:  # the header's bytes [at, at + size)
            return ((1 << size * 8) - 1) << (hl - at - size) * 8

        self.size = hl + self.gso
        self.mask = ((1 << hl * 8) - 1) & ~bits(10, 2) & ~bits(36, 2)
        want = int.from_bytes(buf[s : s + hl], "big") & self.mask & ~bits(4, 2) & ~bits(24, 4)
        id_at, seq_at = (hl - 6) * 8, (hl - 28) * 8
        self.want = want | self.next_id << id_at | self.next_seq << seq_at
        self.step = 1 << id_at | self.gso << seq_at


def coalesce(
    buf: bytes | bytearray,
    spans: Sequence[tuple[int, int]],
    limit: int = MAX_IP,
    *,
    fast: bool = True,
) -> list[list[Buffer]]:
    """Group the IP packets ``buf[s:e]`` of ``spans`` (in arrival order) into TUN writes.

    Returns one list per write, for ``os.writev``: a virtio_net_hdr (with, for a
    super-packet, the rebuilt IP and TCP headers after it) followed by views of ``buf``.
    ``buf`` must not change until the writes are done.

    ``fast``: an IPv4 segment that continues the last run touched, with the first
    segment's size and header (flags ACK; the next ID and sequence number; checksums
    aside), is recognised by one masked compare of its header as an integer with what
    that run expects (``_Run.expect``), instead of decoding it field by field. It merges
    exactly the segments the full test merges (a test runs both on the same batches);
    anything else takes the full test.
    """
    view = memoryview(buf)
    out: list[list[Buffer]] = []
    runs: dict[bytes, _Run] = {}
    merged: list[_Run] = []
    v4, v6 = _V4.unpack_from, _V6.unpack_from
    last: _Run | None = None  # the run the previous packet went to, while it is open
    for s, e in spans:
        n = e - s
        if (
            last is not None
            and n == last.size
            and last.total + last.gso <= limit
            and int.from_bytes(buf[s : s + last.hl], "big") & last.mask == last.want
        ):
            last.parts.append(view[s + last.hl : e])
            last.total += last.gso
            last.n += 1
            if last.n == 2:
                merged.append(last)
            last.next_id = (last.next_id + 1) & 0xFFFF
            last.next_seq = (last.next_seq + last.gso) & 0xFFFFFFFF
            if last.next_id and last.next_seq >= last.gso:
                last.want += last.step
            else:  # a field wraps: the full test takes the next segment
                last = None
            continue
        last = None
        b0 = buf[s] if n >= 40 else 0
        if b0 == 0x45:
            iph = 20
            tos, length, ip_id, fttp, key, seq, ackdoff, flags, win, urg = v4(buf, s)
            ok = length == n and fttp[3] == 6 and not fttp[0] & 0x3F and not fttp[1]
        elif b0 >> 4 == 6 and n >= 60:
            iph = 40
            tos, length, fttp, key, seq, ackdoff, flags, win, urg = v6(buf, s)
            ok = length == n - 40 and fttp[0] == 6
            ip_id = 0
        else:
            if n >= 20 and b0 >> 4 == 4 and buf[s + 9] == 6:
                runs.clear()  # TCP with IP options: passes as is, nothing overtakes it
            out.append([PLAIN, view[s:e]])
            continue
        hl = iph + (ackdoff[4] >> 4 << 2)
        if (
            not ok
            or hl < iph + 20
            or n <= hl
            or (flags != _ACK and flags != _ACK_PSH)
            or urg != b"\0\0"
        ):
            if fttp[3 if iph == 20 else 0] == 6:
                runs.clear()  # a TCP packet that passes as is: nothing overtakes it
            out.append([PLAIN, view[s:e]])
            continue
        plen = n - hl
        # what must be equal: TOS (v6: traffic class and flow label), DF/TTL/protocol
        # (v6: next header, hop limit), ACK number, header length, window, options
        sig = (tos, fttp, ackdoff, win, buf[s + iph + 20 : s + hl])
        run = runs.get(key)
        if (
            run is not None
            and run.next_seq == seq
            and run.sig == sig
            and plen <= run.gso
            and run.total + plen <= limit
            and run.next_id == ip_id
        ):
            run.parts.append(view[s + hl : e])
            run.total += plen
            run.n += 1
            if run.n == 2:
                merged.append(run)
            run.next_seq = (seq + plen) & 0xFFFFFFFF
            if iph == 20:
                run.next_id = (ip_id + 1) & 0xFFFF
            if flags == _ACK_PSH or plen < run.gso:
                run.psh = flags == _ACK_PSH
                del runs[key]
            elif fast and iph == 20:
                run.expect(buf)
                last = run
            continue
        parts: list[Buffer] = [PLAIN, view[s:e]]
        out.append(parts)
        if flags == _ACK_PSH:
            runs.pop(key, None)
            continue
        run = runs[key] = _Run(
            parts,
            s,
            iph,
            hl,
            plen,
            n,
            (seq + plen) & 0xFFFFFFFF,
            (ip_id + 1) & 0xFFFF if iph == 20 else 0,
            sig,
        )
        if fast and iph == 20:
            run.expect(buf)
            last = run
    for run in merged:
        _finish(buf, run)
    return out


def _finish(buf: bytes | bytearray, run: _Run) -> None:
    """Turn a run's first entry into a super-packet header (vnet + IP + TCP)."""
    s, iph, hl = run.start, run.iph, run.hl
    head = bytearray(buf[s : s + hl])
    total = run.total
    if iph == 20:
        _U16.pack_into(head, 2, total)
        ipv4_header_checksum(head)
        gso_type = GSO_TCPV4
        src, dst = bytes(head[12:16]), bytes(head[16:20])
    else:
        _U16.pack_into(head, 4, total - 40)
        gso_type = GSO_TCPV6
        src, dst = bytes(head[8:24]), bytes(head[24:40])
    if run.psh:
        head[iph + 13] |= 0x08
    _U16.pack_into(head, iph + 16, _pseudo(src, dst, total - iph))
    vnet = VnetHdr(F_NEEDS_CSUM, gso_type, hl, run.gso, iph, 16).encode()
    run.parts[0] = vnet + bytes(head)
    run.parts[1] = memoryview(buf)[s + hl : s + hl + run.gso]


def segment(hdr: VnetHdr, packet: bytes) -> list[bytes]:
    """Split a super-packet the way the kernel's GSO does (the inverse of ``coalesce``):
    one packet per ``gso_size`` bytes of payload, IPv4 IDs counting up, PSH and the
    sequence numbers per segment, full checksums. A packet without GSO comes back as it
    is (with its checksum completed if the header asks for it)."""
    if hdr.gso_type == GSO_NONE:
        if hdr.flags & F_NEEDS_CSUM:
            return [_complete(bytearray(packet), hdr.csum_start)]
        return [packet]
    if hdr.gso_type not in (GSO_TCPV4, GSO_TCPV6) or hdr.gso_size <= 0:
        raise ValueError(f"unsupported GSO type {hdr.gso_type}")
    iph = 20 if hdr.gso_type == GSO_TCPV4 else 40
    hl = hdr.hdr_len
    head, payload = packet[:hl], packet[hl:]
    seq = _U32.unpack_from(head, iph + 4)[0]
    ip_id = _U16.unpack_from(head, 4)[0] if iph == 20 else 0
    flags = head[iph + 13]
    out = []
    for i in range(0, len(payload), hdr.gso_size):
        chunk = payload[i : i + hdr.gso_size]
        h = bytearray(head)
        last = i + hdr.gso_size >= len(payload)
        if iph == 20:
            _U16.pack_into(h, 2, hl + len(chunk))
            _U16.pack_into(h, 4, (ip_id + i // hdr.gso_size) & 0xFFFF)
            ipv4_header_checksum(h)
        else:
            _U16.pack_into(h, 4, hl - 40 + len(chunk))
        _U32.pack_into(h, iph + 4, (seq + i) & 0xFFFFFFFF)
        h[iph + 13] = flags if last else flags & ~0x09  # PSH and FIN on the last only
        out.append(_complete(h + chunk, iph))
    return out


def _complete(pkt: bytearray, iph: int) -> bytes:
    """Compute the TCP checksum of ``pkt`` (IP header ``iph`` bytes) from scratch."""
    if iph == 20:
        src, dst = bytes(pkt[12:16]), bytes(pkt[16:20])
    else:
        src, dst = bytes(pkt[8:24]), bytes(pkt[24:40])
    pkt[iph + 16] = pkt[iph + 17] = 0
    total = checksum_add(pkt[iph:], _pseudo(src, dst, len(pkt) - iph))
    _U16.pack_into(pkt, iph + 16, ~total & 0xFFFF)
    return bytes(pkt)
