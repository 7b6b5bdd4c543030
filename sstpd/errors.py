"""The project's exception hierarchy.

Decoders and state machines in ``sstpd.proto`` raise only ``ProtocolError`` subclasses on
bad input; the I/O layer turns one of those into an abort of that one session.
"""

from __future__ import annotations


class SstpdError(Exception):
    """Base class of every error sstpd raises on purpose."""


class ProtocolError(SstpdError):
    """The peer sent something we cannot accept. Ends that one session, never the daemon."""


class ParseError(ProtocolError):
    """Bytes that do not decode: truncated, bad length, bad version, bad value."""


class HttpError(ProtocolError):
    """The HTTP upgrade request was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class CryptoBindingError(ProtocolError):
    """The client's Call Connected did not verify (nonce, certificate hash, protocol or MAC)."""


class ConfigError(SstpdError):
    """A configuration or users file is invalid. Carries the file, line and key."""

    def __init__(
        self, file: str, reason: str, *, line: int | None = None, key: str | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.reason = reason
        where = file if line is None else f"{file}:{line}"
        what = f"{key}: " if key else ""
        super().__init__(f"{where}: {what}{reason}")
