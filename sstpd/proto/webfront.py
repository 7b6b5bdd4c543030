"""Sharing port 443 with a web site (seed FAQ §1-2), sans-I/O part.

The daemon answers only the SSTP URI. When a web backend is configured, any other request
is handed to it: ``classify`` looks at the first request's head, ``rewrite_head`` makes the
head the backend gets. The rewrite drops the client's own ``X-Forwarded-For``,
``X-Forwarded-Proto``, ``Forwarded`` and ``Connection`` headers (a client must not be able
to forge them), adds ours, and asks for ``Connection: close`` so that every request comes
on a fresh connection and therefore carries the client's address too.
"""

from __future__ import annotations

import re

from sstpd.errors import HttpError
from sstpd.proto.sstp.constants import SSTP_METHOD, SSTP_PATH
from sstpd.proto.sstp.http import MAX_HEADER_BLOCK

_END = re.compile(rb"\r?\n\r?\n")
_DROP = {b"x-forwarded-for", b"x-forwarded-proto", b"forwarded", b"connection"}

SSTP = "sstp"
WEB = "web"


def classify(data: bytes) -> str | None:
    """``SSTP`` if the request line is the SSTP upgrade, ``WEB`` for anything else, None
    while the request line is incomplete. Raises HttpError(431) on an endless line."""
    end = data.find(b"\n")
    if end < 0:
        if len(data) > MAX_HEADER_BLOCK:
            raise HttpError(431, "Request Header Fields Too Large")
        return None
    parts = data[:end].rstrip(b"\r").split(b" ")
    if len(parts) == 3 and parts[0] == SSTP_METHOD.encode():
        path = parts[1].partition(b"?")[0].decode("latin-1")
        if path.lower() == SSTP_PATH.lower():
            return SSTP
    return WEB


def head_length(data: bytes) -> int | None:
    """Length of the request head (through the blank line), None if incomplete."""
    m = _END.search(data)
    if m is None:
        if len(data) > MAX_HEADER_BLOCK:
            raise HttpError(431, "Request Header Fields Too Large")
        return None
    return m.end()


def _quote_for(address: str) -> str:
    return f'"[{address}]"' if ":" in address else address


def rewrite_head(head: bytes, client_address: str, proto: str) -> bytes:
    """The head the backend receives: forwarding headers replaced by ours (RFC 7239)."""
    lines = re.split(rb"\r?\n", head.rstrip(b"\r\n"))
    out = [lines[0]]
    for line in lines[1:]:
        name = line.partition(b":")[0].strip().lower()
        if name not in _DROP:
            out.append(line)
    out.append(b"X-Forwarded-For: " + client_address.encode())
    out.append(b"X-Forwarded-Proto: " + proto.encode())
    out.append(f"Forwarded: for={_quote_for(client_address)};proto={proto}".encode())
    out.append(b"Connection: close")
    return b"\r\n".join(out) + b"\r\n\r\n"
