"""PROXY protocol v1 and v2 (HAProxy's spec), as sent by load balancers and TLS offloaders.

A balancer that terminates or passes through TCP sends one header before anything else,
naming the real client's address. sstpd reads it to log and list the real client instead
of the balancer. ``parse`` returns None until the whole header is there, so it can be fed
a growing buffer; it never accepts more than ``MAX_HEADER`` bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from sstpd.errors import ParseError

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the spec's longest v1 line, CRLF included
MAX_HEADER = 16 + 536  # v2 header with the largest address block the spec defines

_V2_HEAD = struct.Struct("!12sBBH")
_FAMILIES = {0x11: (4, 12), 0x12: (4, 12), 0x21: (6, 36), 0x22: (6, 36)}


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """``source``/``destination`` are None for LOCAL (v2) and UNKNOWN (v1) headers."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None


def parse(data: bytes | bytearray | memoryview) -> tuple[ProxyInfo, int] | None:
    """Decode a PROXY header at the start of ``data``: (info, header length) or None for
    "need more bytes". Raises ParseError for anything that is not a valid header."""
    buf = bytes(data[:MAX_HEADER])
    if buf[:1] == b"P":
        return _parse_v1(buf)
    if buf[:1] == b"\r":
        return _parse_v2(buf)
    if not buf:
        return None
    raise ParseError("no PROXY protocol header")


def _parse_v1(buf: bytes) -> tuple[ProxyInfo, int] | None:
    n = min(len(buf), len(V1_PREFIX))
    if buf[:n] != V1_PREFIX[:n]:
        raise ParseError("no PROXY protocol header")
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buf) >= V1_MAX:
            raise ParseError("PROXY v1 line too long")
        return None
    try:
        parts = buf[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ParseError("PROXY v1 line is not ASCII") from None
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyInfo(1, None, None), end + 2
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ParseError("malformed PROXY v1 line")
    try:
        src, dst = ip_address(parts[2]), ip_address(parts[3])
        sport, dport = _port(parts[4]), _port(parts[5])
    except ValueError as exc:
        raise ParseError(f"malformed PROXY v1 line: {exc}") from None
    want = IPv4Address if parts[1] == "TCP4" else IPv6Address
    if not isinstance(src, want) or not isinstance(dst, want):
        raise ParseError("PROXY v1 address family mismatch")
    return ProxyInfo(1, (str(src), sport), (str(dst), dport)), end + 2


def _port(text: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ValueError(f"bad port {text!r}")
    return int(text)


def _parse_v2(buf: bytes) -> tuple[ProxyInfo, int] | None:
    n = min(len(buf), len(V2_SIGNATURE))
    if buf[:n] != V2_SIGNATURE[:n]:
        raise ParseError("no PROXY protocol header")
    if len(buf) < _V2_HEAD.size:
        return None
    _, ver_cmd, family, length = _V2_HEAD.unpack_from(buf)
    if ver_cmd >> 4 != 2 or ver_cmd & 0x0F > 1:
        raise ParseError(f"bad PROXY v2 version/command 0x{ver_cmd:02x}")
    total = _V2_HEAD.size + length
    if total > MAX_HEADER:
        raise ParseError("PROXY v2 header too long")
    if len(buf) < total:
        return None
    if ver_cmd & 0x0F == 0 or family not in _FAMILIES:  # LOCAL, or UNSPEC / unix sockets
        return ProxyInfo(2, None, None), total
    ipver, size = _FAMILIES[family]
    if length < size:
        raise ParseError("PROXY v2 address block too short")
    a = buf[_V2_HEAD.size : _V2_HEAD.size + size]
    alen = 4 if ipver == 4 else 16
    src = ip_address(a[:alen])
    dst = ip_address(a[alen : 2 * alen])
    sport, dport = struct.unpack_from("!HH", a, 2 * alen)
    return ProxyInfo(2, (str(src), sport), (str(dst), dport)), total


def encode_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    fam = "TCP4" if isinstance(ip_address(source[0]), IPv4Address) else "TCP6"
    line = f"PROXY {fam} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    return line.encode("ascii")


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    if source is None or destination is None:
        return _V2_HEAD.pack(V2_SIGNATURE, 0x20, 0x00, 0)
    src, dst = ip_address(source[0]), ip_address(destination[0])
    family = 0x11 if isinstance(src, IPv4Address) else 0x21
    block = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return _V2_HEAD.pack(V2_SIGNATURE, 0x21, family, len(block)) + block
