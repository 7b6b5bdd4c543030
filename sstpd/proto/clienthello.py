"""The TLS ClientHello, read before TLS starts so the listener can pick a certificate.

Python's ``ssl`` cannot choose a certificate by ALPN (the only hook, ``sni_callback``,
runs before ALPN is negotiated and never sees the client's list), so the listener looks
at the first bytes of a connection itself: an ACME validator offering only ALPN
``acme-tls/1`` gets the TLS-ALPN-01 challenge certificate, everything else the normal one
(RFC 8737, docs/protocol/acme.md §2).

:func:`decode` takes the bytes received so far and returns either the
:class:`ClientHello` or :class:`Incomplete` (how many bytes it needs at least). It
understands the record layer (RFC 8446 §5.1: ContentType 22, legacy version 3.x, length
at most 2^14) and the handshake layer, including a ClientHello split over several
records. It never accepts more than ``MAX_INPUT`` bytes; anything that is not a
ClientHello raises ParseError. :func:`encode` is the inverse, for tests and tooling.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sstpd.errors import ParseError

__all__ = [
    "ACME_TLS_1",
    "EXT_ALPN",
    "EXT_SERVER_NAME",
    "MAX_HELLO",
    "MAX_INPUT",
    "ClientHello",
    "Incomplete",
    "alpn_extension",
    "decode",
    "encode",
    "server_name_extension",
]

CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
EXT_ALPN = 16
ACME_TLS_1 = b"acme-tls/1"

MAX_RECORD = 1 << 14  # TLSPlaintext.length limit
MAX_HELLO = 1 << 14  # handshake body bytes we accept (post-quantum hellos are ~1.8 KB)
MAX_INPUT = MAX_HELLO + 4 + 5 * 32  # the hello in at most 32 records, headers included
_RECORD = struct.Struct("!BHH")


@dataclass(frozen=True, slots=True)
class Incomplete:
    """More bytes are needed: at least ``need`` in total (for SO_RCVLOWAT)."""

    need: int


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The fields of a ClientHello (RFC 8446 §4.1.2); extensions in the order sent."""

    legacy_version: int = 0x0303
    random: bytes = bytes(32)
    session_id: bytes = b""
    cipher_suites: tuple[int, ...] = (0x1301, 0xC02F)
    compression_methods: bytes = b"\x00"
    extensions: tuple[tuple[int, bytes], ...] | None = ()  # None: no extensions block

    def extension(self, ext_type: int) -> bytes | None:
        for t, data in self.extensions or ():
            if t == ext_type:
                return data
        return None

    @property
    def server_name(self) -> str | None:
        """The host_name of the server_name extension (lower case), or None."""
        data = self.extension(EXT_SERVER_NAME)
        return None if data is None else _server_name(data)

    @property
    def alpn(self) -> tuple[bytes, ...] | None:
        """The ALPN protocol names offered, or None without the extension."""
        data = self.extension(EXT_ALPN)
        return None if data is None else _alpn(data)

    @property
    def only_acme(self) -> bool:
        """True when ALPN offers exactly ``acme-tls/1`` (an RFC 8737 validator)."""
        return self.alpn == (ACME_TLS_1,)


# ---------------------------------------------------------------------------------------
# decoding


def decode(data: bytes | bytearray | memoryview) -> ClientHello | Incomplete:
    """The ClientHello at the start of ``data`` or how many bytes are still needed.

    Raises ParseError for anything else (another record type, a non-ClientHello
    handshake message, bad lengths, a hello larger than ``MAX_HELLO``)."""
    buf = bytes(data[:MAX_INPUT])
    msg = b""
    pos = 0
    while True:
        if len(buf) < pos + _RECORD.size:
            if pos + _RECORD.size > MAX_INPUT:
                raise ParseError(f"ClientHello spans more than {MAX_INPUT} bytes")
            return Incomplete(pos + _RECORD.size)
        ctype, version, length = _RECORD.unpack_from(buf, pos)
        if ctype != CONTENT_HANDSHAKE:
            raise ParseError(f"not a TLS handshake record (content type {ctype})")
        if version >> 8 != 3:
            raise ParseError(f"record version {version:#06x} is not TLS")
        if not 0 < length <= MAX_RECORD:
            raise ParseError(f"record length {length} out of range")
        end = pos + _RECORD.size + length
        if end > MAX_INPUT:
            raise ParseError(f"ClientHello spans more than {MAX_INPUT} bytes")
        if len(buf) < end:
            return Incomplete(end)
        msg += buf[pos + _RECORD.size : end]
        pos = end
        if len(msg) >= 1 and msg[0] != HANDSHAKE_CLIENT_HELLO:
            raise ParseError(f"handshake message type {msg[0]} is not ClientHello")
        if len(msg) < 4:
            continue
        size = int.from_bytes(msg[1:4], "big")
        if size > MAX_HELLO:
            raise ParseError(f"ClientHello of {size} bytes is larger than {MAX_HELLO}")
        if len(msg) >= 4 + size:
            return _decode_body(msg[4 : 4 + size])


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ParseError(f"{self.what} truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def vector(self, len_size: int) -> bytes:
        return self.take(int.from_bytes(self.take(len_size), "big"))

    def done(self) -> bool:
        return self.pos == len(self.data)

    def end(self) -> None:
        if not self.done():
            raise ParseError(f"{len(self.data) - self.pos} trailing bytes in {self.what}")


def _decode_body(body: bytes) -> ClientHello:
    r = _Reader(body, "ClientHello")
    version = int.from_bytes(r.take(2), "big")
    random = r.take(32)
    session_id = r.vector(1)
    if len(session_id) > 32:
        raise ParseError("session id longer than 32 bytes")
    suites = r.vector(2)
    if not suites or len(suites) % 2:
        raise ParseError("bad cipher_suites length")
    compression = r.vector(1)
    if not compression:
        raise ParseError("no compression method")
    extensions: tuple[tuple[int, bytes], ...] | None = None
    if not r.done():
        ext_r = _Reader(r.vector(2), "extensions")
        r.end()
        exts: list[tuple[int, bytes]] = []
        seen: set[int] = set()
        while not ext_r.done():
            ext_type = int.from_bytes(ext_r.take(2), "big")
            if ext_type in seen:
                raise ParseError(f"extension {ext_type} appears twice")
            seen.add(ext_type)
            exts.append((ext_type, ext_r.vector(2)))
        extensions = tuple(exts)
    hello = ClientHello(
        legacy_version=version,
        random=random,
        session_id=session_id,
        cipher_suites=struct.unpack(f"!{len(suites) // 2}H", suites),
        compression_methods=compression,
        extensions=extensions,
    )
    _ = hello.server_name, hello.alpn  # validate both now: the properties then cannot fail
    return hello


def _server_name(data: bytes) -> str | None:
    """RFC 6066 §3: ServerNameList; only host_name (0), at most one, ASCII."""
    outer = _Reader(data, "server_name extension")
    r = _Reader(outer.vector(2), "server_name list")
    outer.end()
    name: str | None = None
    while not r.done():
        kind = r.take(1)[0]
        value = r.vector(2)
        if kind != 0:
            continue  # no other name types are defined; ignore rather than fail
        if name is not None:
            raise ParseError("two host names in server_name")
        if not value or not value.isascii() or b"\x00" in value:
            raise ParseError("server_name host name is empty or not ASCII")
        name = value.decode("ascii").lower().rstrip(".")
    return name


def _alpn(data: bytes) -> tuple[bytes, ...]:
    """RFC 7301 §3.1: ProtocolNameList, at least one non-empty name."""
    outer = _Reader(data, "ALPN extension")
    r = _Reader(outer.vector(2), "ALPN list")
    outer.end()
    names: list[bytes] = []
    while not r.done():
        name = r.vector(1)
        if not name:
            raise ParseError("empty ALPN protocol name")
        names.append(name)
    if not names:
        raise ParseError("empty ALPN list")
    return tuple(names)


# ---------------------------------------------------------------------------------------
# encoding


def _vec(data: bytes, len_size: int) -> bytes:
    return len(data).to_bytes(len_size, "big") + data


def server_name_extension(name: str) -> tuple[int, bytes]:
    return EXT_SERVER_NAME, _vec(b"\x00" + _vec(name.encode("ascii"), 2), 2)


def alpn_extension(names: list[bytes] | tuple[bytes, ...]) -> tuple[int, bytes]:
    return EXT_ALPN, _vec(b"".join(_vec(n, 1) for n in names), 2)


def encode(hello: ClientHello, fragment: int = MAX_RECORD) -> bytes:
    """The records carrying ``hello``, each holding at most ``fragment`` bytes of it."""
    body = (
        hello.legacy_version.to_bytes(2, "big")
        + hello.random
        + _vec(hello.session_id, 1)
        + _vec(struct.pack(f"!{len(hello.cipher_suites)}H", *hello.cipher_suites), 2)
        + _vec(hello.compression_methods, 1)
    )
    if hello.extensions is not None:
        body += _vec(b"".join(t.to_bytes(2, "big") + _vec(d, 2) for t, d in hello.extensions), 2)
    msg = bytes([HANDSHAKE_CLIENT_HELLO]) + _vec(body, 3)
    out = b""
    for i in range(0, len(msg), fragment):
        part = msg[i : i + fragment]
        out += _RECORD.pack(CONTENT_HANDSHAKE, 0x0301, len(part)) + part
    return out
