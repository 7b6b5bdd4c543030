"""The Internet checksum (RFC 1071), shared by the IPv4, UDP and ICMPv6 codecs."""

from __future__ import annotations

import struct

__all__ = ["checksum"]


def checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum of ``data`` (RFC 1071).

    A buffer that carries its own correct checksum sums to 0."""
    if len(data) & 1:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
