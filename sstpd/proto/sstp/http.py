"""The HTTP/1.1 upgrade that precedes SSTP ([MS-SSTP] §3.2.4.1, §4.1; docs/protocol/sstp.md §2).

Only one request and one response are ever exchanged; after the header block the stream
carries SSTP packets, exposed as ``leftover``. Parsing is lenient about line endings (CRLF or
bare LF) and header-name case. The server-side parser raises only ``HttpError`` (with the
status to answer), the client-side parser only ``ParseError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sstpd.errors import HttpError, ParseError
from sstpd.proto.sstp.constants import SSTP_CONTENT_LENGTH, SSTP_METHOD, SSTP_PATH

#: Largest accepted header block. A real SSTP request is ~200 bytes; 8 KiB is the limit
#: Apache and nginx (large_client_header_buffers) use for one request line / header.
MAX_HEADER_BLOCK = 8 * 1024

_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class Request:
    """A parsed SSTP_DUPLEX_POST request. ``headers`` keys are lower case."""

    method: str
    path: str
    version: str
    headers: dict[str, str]
    correlation_id: str | None
    host: str | None


class _HeaderBlock:
    """Accumulates bytes until the blank line ending the header block."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.done = False
        self.leftover = b""

    def feed(self, data: bytes | bytearray | memoryview) -> list[str] | None:
        """Lines of the header block (decoded as Latin-1) once complete; ``None`` before.

        Raises ``ValueError`` when the block exceeds ``MAX_HEADER_BLOCK``.
        """
        if self.done:
            self.leftover += bytes(data)
            return None
        # Only the tail can complete a terminator that spans two feeds.
        start = max(0, len(self._buf) - 3)
        self._buf += data
        match = _END_OF_HEADERS.search(self._buf, start)
        if match is None:
            if len(self._buf) > MAX_HEADER_BLOCK:
                raise ValueError("header block too large")
            return None
        if match.start() > MAX_HEADER_BLOCK:
            raise ValueError("header block too large")
        self.done = True
        self.leftover = bytes(self._buf[match.end() :])
        block = bytes(self._buf[: match.start()]).decode("latin-1")
        self._buf = bytearray()
        return [line.removesuffix("\r") for line in block.split("\n")]


def _parse_headers(lines: list[str]) -> dict[str, str]:
    """Header lines to a lower-case-keyed dict; raises ``ValueError`` on malformed lines."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise ValueError(f"malformed header line {line[:40]!r}")
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class RequestParser:
    """Server side: parse the client's upgrade request.

    ``feed()`` returns the ``Request`` once the header block is complete, ``None`` before,
    and raises ``HttpError(status, reason)`` when the request must be refused: 431 (header
    block too large), 400 (malformed), 505 (not HTTP/1.1), 405 (method), 404 (path).
    """

    def __init__(self) -> None:
        self._block = _HeaderBlock()

    @property
    def leftover(self) -> bytes:
        """Bytes received after the header block (the start of the SSTP stream)."""
        return self._block.leftover

    def feed(self, data: bytes | bytearray | memoryview) -> Request | None:
        try:
            lines = self._block.feed(data)
        except ValueError:
            raise HttpError(431, "Request Header Fields Too Large") from None
        if lines is None:
            return None
        parts = lines[0].split(" ")
        if len(parts) != 3 or not all(parts):
            raise HttpError(400, "Bad Request")
        method, target, version = parts
        if not version.startswith("HTTP/"):
            raise HttpError(400, "Bad Request")
        if version != "HTTP/1.1":
            raise HttpError(505, "HTTP Version Not Supported")
        if method != SSTP_METHOD:
            raise HttpError(405, "Method Not Allowed")
        path = target.partition("?")[0]  # the tenantid query variable SHOULD be ignored
        if path.lower() != SSTP_PATH.lower():
            raise HttpError(404, "Not Found")
        try:
            headers = _parse_headers(lines[1:])
        except ValueError:
            raise HttpError(400, "Bad Request") from None
        return Request(
            method=method,
            path=path,
            version=version,
            headers=headers,
            correlation_id=headers.get("sstpcorrelationid"),
            host=headers.get("host"),
        )


class ResponseParser:
    """Client side: parse the server's response; ``feed()`` returns the status code."""

    def __init__(self) -> None:
        self._block = _HeaderBlock()

    @property
    def leftover(self) -> bytes:
        return self._block.leftover

    def feed(self, data: bytes | bytearray | memoryview) -> int | None:
        try:
            lines = self._block.feed(data)
        except ValueError:
            raise ParseError("HTTP response header block too large") from None
        if lines is None:
            return None
        version, _, rest = lines[0].partition(" ")
        code = rest.partition(" ")[0]
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ParseError(f"malformed HTTP status line {lines[0][:60]!r}")
        try:
            _parse_headers(lines[1:])
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        return int(code)


def _clean(text: str) -> str:
    """Keep header values on one line."""
    return "".join(ch for ch in text if ch not in "\r\n")


def build_ok_response(server: str = "sstpd") -> bytes:
    """The 200 response (§4.1). No Date header: the sans-I/O layer has no clock."""
    return (
        "HTTP/1.1 200 OK\r\n"
        f"Content-Length: {SSTP_CONTENT_LENGTH}\r\n"
        f"Server: {_clean(server)}\r\n"
        "\r\n"
    ).encode("latin-1", "replace")


def build_error_response(status: int, reason: str) -> bytes:
    """An error response after which the server closes the connection."""
    return (
        f"HTTP/1.1 {status:03d} {_clean(reason)}\r\n"
        "Connection: close\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode("latin-1", "replace")


def build_request(host: str, correlation_id: str) -> bytes:
    """The client's upgrade request: exactly the four headers of docs/protocol/sstp.md §2."""
    return (
        f"{SSTP_METHOD} {SSTP_PATH} HTTP/1.1\r\n"
        f"Host: {_clean(host)}\r\n"
        f"Content-Length: {SSTP_CONTENT_LENGTH}\r\n"
        f"SSTPCORRELATIONID: {_clean(correlation_id)}\r\n"
        "\r\n"
    ).encode("latin-1", "replace")
