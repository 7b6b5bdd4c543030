"""Userspace GRO (sstpd.proto.gro): the virtio_net_hdr codec and the TCP coalescer.

The coalescer is checked against its inverse: segments coalesced and split again (the
way the kernel's GSO does) must give back the very packets that went in, per flow in
order, checksums included; packets that must not be merged come out untouched.
Checksums here are computed independently of the module (``int.from_bytes`` mod 65535).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd.proto import gro
from sstpd.proto.gro import PLAIN, VnetHdr

SRC, DST = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])
SRC6, DST6 = bytes.fromhex("fd00" + "00" * 13 + "02"), bytes.fromhex("fd00" + "00" * 13 + "01")


def ocsum(data: bytes) -> int:
    """Ones'-complement sum of 16-bit big-endian words, independently of
    gro.checksum_add: that sum is the value of the bytes mod 65535 (0 only for zeros)."""
    if len(data) & 1:
        data += b"\0"
    v = int.from_bytes(data, "big")
    return (v % 0xFFFF or 0xFFFF) if v else 0


def csum(data: bytes) -> int:
    """The Internet checksum of ``data`` (0 when ``data`` already carries a valid one)."""
    return ~ocsum(data) & 0xFFFF


def tcp(
    seq: int,
    payload: bytes,
    *,
    flags: int = 0x10,
    ip_id: int = 1,
    sport: int = 40000,
    dport: int = 5201,
    ack: int = 7,
    window: int = 500,
    options: bytes = b"\x01\x01\x08\x0a" + bytes(8),
    tos: int = 0,
    ttl: int = 64,
    v6: bool = False,
    frag: int = 0x4000,
) -> bytes:
    th = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack,
            (20 + len(options)) // 4 << 4,
            flags,
            window,
            0,
            0,
        )
        + options
    )
    seg = th + payload
    if v6:
        pseudo = SRC6 + DST6 + struct.pack("!IxxxB", len(seg), 6)
        c = csum(pseudo + seg)
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
        return struct.pack("!IHBB", 0x60000000, len(seg), 6, ttl) + SRC6 + DST6 + seg
    pseudo = SRC + DST + struct.pack("!HH", 6, len(seg))
    c = csum(pseudo + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(seg), ip_id, frag, ttl, 6, 0, SRC, DST)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + seg


def udp(n: int) -> bytes:
    body = struct.pack("!HHHH", 1, 2, 8 + n, 0) + bytes(n)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 17, 0, SRC, DST)
    return ip + body


def flow(n: int, mss: int, last: int | None = None, **kw: object) -> list[bytes]:
    out = []
    seq = 1000
    for i in range(n):
        size = last if (last is not None and i == n - 1) else mss
        out.append(tcp(seq, bytes([i % 251]) * size, ip_id=100 + i, **kw))  # type: ignore[arg-type]
        seq += size
    return out


def run(
    packets: list[bytes], limit: int = gro.MAX_IP, *, fast: bool = True
) -> list[tuple[VnetHdr, bytes]]:
    buf = bytearray(b"".join(packets))
    spans, at = [], 0
    for p in packets:
        spans.append((at, at + len(p)))
        at += len(p)
    writes = gro.coalesce(buf, spans, limit, fast=fast)
    out = []
    for parts in writes:
        data = b"".join(bytes(x) for x in parts)
        out.append((VnetHdr.decode(data), data[gro.VNET_HDR_LEN :]))
    return out


def resegment(writes: list[tuple[VnetHdr, bytes]]) -> list[bytes]:
    return [p for hdr, pkt in writes for p in gro.segment(hdr, pkt)]


# ---------------------------------------------------------------- the header codec
@given(
    st.tuples(st.integers(0, 255), st.integers(0, 255), *(st.integers(0, 0xFFFF) for _ in range(4)))
)
def test_vnet_header_round_trip(fields: tuple[int, int, int, int, int, int]) -> None:
    h = VnetHdr(*fields)
    data = h.encode()
    assert len(data) == gro.VNET_HDR_LEN
    assert VnetHdr.decode(data) == h


def test_vnet_header_layout_is_the_kernels() -> None:
    # struct virtio_net_hdr: u8 flags, u8 gso_type, le16 hdr_len, gso_size, csum_start,
    # csum_offset (little-endian: the device is put in TUNSETVNETLE mode)
    data = VnetHdr(1, 4, 0x0102, 0x0304, 0x0506, 0x0708).encode()
    assert data == bytes([1, 4, 2, 1, 4, 3, 6, 5, 8, 7])
    assert bytes(10) == PLAIN


@given(st.binary(max_size=9))
def test_vnet_header_decode_rejects_short(data: bytes) -> None:
    with pytest.raises(ValueError):
        VnetHdr.decode(data)


# ---------------------------------------------------------------- coalescing
def test_one_flow_becomes_one_super_packet() -> None:
    pkts = flow(10, 1348, last=500)
    writes = run(pkts)
    assert len(writes) == 1
    hdr, sp = writes[0]
    assert hdr == VnetHdr(gro.F_NEEDS_CSUM, gro.GSO_TCPV4, 52, 1348, 20, 16)
    assert len(sp) == 52 + 9 * 1348 + 500
    assert struct.unpack_from("!H", sp, 2)[0] == len(sp)  # IPv4 total length
    assert csum(sp[:20]) == 0  # valid IPv4 header checksum
    # the TCP checksum field holds the folded pseudo-header sum only (not inverted)
    pseudo = SRC + DST + struct.pack("!HH", 6, len(sp) - 20)
    assert struct.unpack_from("!H", sp, 36)[0] == ocsum(pseudo)
    assert resegment(writes) == pkts


def test_ipv6_flow_coalesces() -> None:
    pkts = flow(5, 1200, v6=True)
    writes = run(pkts)
    assert len(writes) == 1
    hdr, sp = writes[0]
    assert (hdr.gso_type, hdr.csum_start, hdr.hdr_len) == (gro.GSO_TCPV6, 40, 72)
    assert struct.unpack_from("!H", sp, 4)[0] == len(sp) - 40
    assert resegment(writes) == pkts


def test_psh_ends_the_run_and_stays_on_the_last_segment() -> None:
    pkts = flow(3, 1000)
    pkts[1] = tcp(2000, bytes([1]) * 1000, flags=0x18, ip_id=101)
    writes = run(pkts)
    assert [h.gso_type for h, _ in writes] == [gro.GSO_TCPV4, gro.GSO_NONE]
    assert writes[0][1][33] == 0x18
    assert resegment(writes) == pkts


def test_shorter_segment_ends_the_run() -> None:
    pkts = [*flow(2, 1000, last=10), tcp(3010, b"x" * 1000, ip_id=102)]
    writes = run(pkts)
    assert len(writes) == 2
    assert writes[1][1] == pkts[2] and writes[1][0] == VnetHdr()
    assert resegment(writes) == pkts


def test_size_limit_splits_runs() -> None:
    pkts = flow(60, 1348)
    writes = run(pkts)
    assert all(len(sp) <= gro.MAX_IP for _, sp in writes)
    assert len(writes) == 2
    assert resegment(writes) == pkts


@pytest.mark.parametrize(
    "second",
    [
        tcp(1000 + 999, b"b" * 1000, ip_id=101),  # sequence gap (overlap)
        tcp(2000, b"b" * 1000, ip_id=105),  # IPv4 ID not the next one
        tcp(2000, b"b" * 1000, ip_id=101, ack=8),  # another ACK number
        tcp(2000, b"b" * 1000, ip_id=101, window=501),
        tcp(2000, b"b" * 1000, ip_id=101, options=b"\x01\x01\x08\x0a" + bytes(7) + b"\x01"),
        tcp(2000, b"b" * 1000, ip_id=101, tos=2),  # ECN bits differ
        tcp(2000, b"b" * 1000, ip_id=101, ttl=63),
        tcp(2000, b"b" * 1000, ip_id=101, frag=0),  # DF differs
        tcp(2000, b"b" * 1000, ip_id=101, sport=40001),  # another flow
        tcp(2000, b"b" * 1001, ip_id=101),  # longer than the first segment
    ],
)
def test_segments_that_must_not_merge(second: bytes) -> None:
    first = tcp(1000, b"a" * 1000, ip_id=100)
    writes = run([first, second])
    assert [pkt for _, pkt in writes] == [first, second]
    assert all(h == VnetHdr() for h, _ in writes)


@pytest.mark.parametrize(
    "odd",
    [
        tcp(2000, b"b" * 1000, ip_id=101, flags=0x11),  # FIN
        tcp(2000, b"b" * 1000, ip_id=101, flags=0x02),  # SYN
        tcp(2000, b"b" * 1000, ip_id=101, flags=0x04 | 0x10),  # RST
        tcp(2000, b"b" * 1000, ip_id=101, flags=0x90),  # CWR
        tcp(2000, b"", ip_id=101),  # pure ACK
        tcp(2000, b"b" * 1000, ip_id=101, frag=0x2000),  # more fragments
        tcp(2000, b"b" * 1000, ip_id=101, frag=0x0001),  # a fragment's offset
    ],
)
def test_packets_that_are_never_merged_pass_untouched(odd: bytes) -> None:
    pkts = [tcp(1000, b"a" * 1000, ip_id=100), odd, tcp(3000, b"c" * 1000, ip_id=102)]
    writes = run(pkts)
    assert [pkt for _, pkt in writes] == pkts
    assert all(h == VnetHdr() for h, _ in writes)


def test_bad_lengths_and_junk_pass_untouched() -> None:
    good = flow(2, 500)
    long_len = bytearray(tcp(2000, b"b" * 500, ip_id=101))
    long_len[3] += 1  # IP total length says one byte more than the packet
    junk = [b"", b"\x45", bytes(39), b"\x60" + bytes(50), bytes(long_len), udp(100)]
    pkts = [good[0], *junk, good[1]]
    writes = run(pkts)
    assert [pkt for _, pkt in writes] == pkts


def test_interleaved_flows_each_coalesce_in_order() -> None:
    a = flow(4, 800, sport=1)
    b = flow(4, 800, sport=2)
    mixed = [p for pair in zip(a, b, strict=True) for p in pair]
    writes = run(mixed)
    assert len(writes) == 2
    assert resegment(writes) == a + b


def test_udp_between_segments_keeps_its_place() -> None:
    a = flow(4, 800)
    pkts = [a[0], a[1], udp(30), a[2], a[3]]
    writes = run(pkts)
    # UDP may be passed by TCP segments of a run that started before it, never the
    # other way round; TCP order within the flow is kept
    assert [h.gso_type for h, _ in writes] == [gro.GSO_TCPV4, gro.GSO_NONE]
    assert resegment(writes) == [*a, udp(30)]


@st.composite
def batches(draw: st.DrawFn) -> list[bytes]:
    """Several flows (v4 and v6) of segments with a few odd packets mixed in."""
    flows: list[list[bytes]] = []
    for f in range(draw(st.integers(1, 3))):
        mss = draw(st.integers(1, 1400))
        n = draw(st.integers(1, 12))
        sizes = [mss] * n
        if draw(st.booleans()):
            sizes[-1] = draw(st.integers(1, mss))
        v6 = draw(st.booleans())
        seq = draw(st.integers(0, 0xFFFFFFFF))
        ip_id = draw(st.integers(0, 0xFFFF))
        pkts = []
        for i, size in enumerate(sizes):
            flags = draw(st.sampled_from([0x10, 0x10, 0x10, 0x18, 0x11]))
            pkts.append(
                tcp(
                    seq,
                    draw(st.binary(min_size=size, max_size=size)),
                    flags=flags,
                    ip_id=(ip_id + i) & 0xFFFF,
                    sport=f,
                    v6=v6,
                )
            )
            seq += size
        flows.append(pkts)
    # interleave, keeping each flow's order
    out: list[bytes] = []
    while any(flows):
        i = draw(st.sampled_from([k for k, f in enumerate(flows) if f]))
        out.append(flows[i].pop(0))
        if draw(st.integers(0, 9)) == 0:
            out.append(udp(draw(st.integers(0, 100))))
    return out


def by_flow(pkts: list[bytes]) -> dict[bytes, list[bytes]]:
    d: dict[bytes, list[bytes]] = {}
    for p in pkts:
        key = p[9:10] + p[20:24] if p[0] == 0x45 else p[6:7] + p[40:44]
        d.setdefault(key, []).append(p)
    return d


@settings(max_examples=300, deadline=None)
@given(batches(), st.sampled_from([gro.MAX_IP, 4000]))
def test_coalesced_then_segmented_equals_input(pkts: list[bytes], limit: int) -> None:
    writes = run(pkts, limit)
    back = resegment(writes)
    assert sorted(back) == sorted(pkts)
    assert by_flow(back) == by_flow(pkts)  # each flow's packets in their order
    assert len(writes) <= len(pkts)
    for hdr, sp in writes:
        assert len(sp) <= limit
        if hdr.gso_type == gro.GSO_NONE:
            assert hdr == VnetHdr() and sp in pkts  # untouched


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=8))
def test_arbitrary_bytes_never_break_the_coalescer(frames: list[bytes]) -> None:
    frames = [(b"\x45" + f[1:]) if i % 2 and f else f for i, f in enumerate(frames)]
    writes = run(frames)
    assert sorted(pkt for _, pkt in writes) == sorted(frames)


# ---------------------------------------------------------------- the fast path
# ``coalesce(fast=True)`` (the default, what the daemon runs) recognises a segment that
# continues the last run by one masked compare; ``fast=False`` decodes every header.
# Both must write exactly the same bytes for every batch, hostile ones included.


@settings(max_examples=300, deadline=None)
@given(batches(), st.sampled_from([gro.MAX_IP, 4000]))
def test_fast_path_writes_what_the_full_test_writes(pkts: list[bytes], limit: int) -> None:
    assert run(pkts, limit) == run(pkts, limit, fast=False)


@st.composite
def tampered(draw: st.DrawFn) -> list[bytes]:
    """One IPv4 flow of full segments with one header byte of one segment changed: the
    fast path must turn down exactly what the full test turns down."""
    n, mss = draw(st.integers(2, 10)), draw(st.integers(1, 1400))
    seq, ip_id = draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFF))
    pkts = [tcp(seq + k * mss, bytes([k]) * mss, ip_id=(ip_id + k) & 0xFFFF) for k in range(n)]
    i = draw(st.integers(1, n - 1))
    hl = 20 + (pkts[i][32] >> 4) * 4
    at = draw(st.integers(0, hl - 1))
    bad = bytearray(pkts[i])
    bad[at] ^= draw(st.integers(1, 255))
    pkts[i] = bytes(bad)
    return pkts


@settings(max_examples=400, deadline=None)
@given(tampered())
def test_fast_path_refuses_what_the_full_test_refuses(pkts: list[bytes]) -> None:
    assert run(pkts) == run(pkts, fast=False)


@pytest.mark.parametrize(("ip_id", "seq"), [(0xFFFB, 1000), (100, 0xFFFFFFFF - 3 * 700)])
def test_a_wrapping_id_or_sequence_number_coalesces_as_without_the_fast_path(
    ip_id: int, seq: int
) -> None:
    pkts = [tcp(seq + i * 700, bytes([i]) * 700, ip_id=(ip_id + i) & 0xFFFF) for i in range(8)]
    writes = run(pkts)
    assert writes == run(pkts, fast=False)
    assert len(writes) == 1  # one run across the wrap
    assert resegment(writes) == pkts


def test_a_length_field_off_by_one_after_an_id_wrap_is_not_merged() -> None:
    """An ID wrapping to 0 must not carry into the length field of what is expected."""
    pkts = [tcp(1000 + i * 700, bytes(700), ip_id=(0xFFFE + i) & 0xFFFF) for i in range(4)]
    bad = bytearray(pkts[2])  # ID 0: claims one byte more than it carries
    struct.pack_into("!H", bad, 2, len(bad) + 1)
    pkts[2] = bytes(bad)
    writes = run(pkts)
    assert writes == run(pkts, fast=False)
    assert [pkt for hdr, pkt in writes if hdr.gso_type == gro.GSO_NONE] == [pkts[2], pkts[3]]
