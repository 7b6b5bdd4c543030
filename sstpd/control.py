"""The control socket protocol, and the blocking client ``sstpctl`` and the status app use.

The daemon listens on a unix stream socket (``server.control_socket``, mode 0660: root
and the socket's group only; the file permissions are the access control). Each way,
one JSON object per line (UTF-8, ``\\n``-terminated). A connection may carry several
requests; each gets exactly one response, in order::

    -> {"cmd": "sessions"}
    <- {"ok": true, "sessions": [{"id": 3, "user": "alice", ...}]}
    -> {"cmd": "kick", "user": "bob"}
    <- {"ok": false, "error": "no session matches user 'bob'"}

Commands (arguments besides ``cmd`` in brackets):

``health``             ``status``: "ok" (accepting sessions), "draining" or "stopping"
``sessions``           the open sessions (see ``SESSION_FIELDS``)
``stats``              counters since start, closed sessions included (see the README)
``kick`` [id | user]   graceful Call Disconnect of that session / all sessions of that user
``reload``             re-read config, certificate, key, users file; ``changed``,
                       ``needs_restart`` on success, the reason in ``error`` on failure
``drain`` / ``undrain``  stop / resume accepting new sessions; existing ones continue
``cert``               the served certificate (names, issuer, validity) and the ACME
                       state (next renewal, last error, counters; null without [acme])
``renew``              start an ACME renewal now (answers at once; poll ``cert``)

A request longer than ``MAX_REQUEST`` bytes, a line that is not a JSON object, an unknown
command or a bad argument gets ``{"ok": false, "error": ...}``; an over-long line also
ends the connection. A connection idle for ``IDLE_TIMEOUT`` seconds is closed.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from sstpd.config import DEFAULT_CONFIG_PATH, ServerConfig, load_config
from sstpd.errors import SstpdError

__all__ = [
    "COMMANDS",
    "DEFAULT_SOCKET",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_REQUEST",
    "MAX_RESPONSE",
    "SESSION_FIELDS",
    "CommandFailed",
    "ControlError",
    "DaemonUnreachable",
    "call",
    "decode_request",
    "default_socket_path",
    "encode",
    "request",
]

DEFAULT_SOCKET = ServerConfig.control_socket
MAX_REQUEST = 4096  # bytes of one request line, newline included
MAX_RESPONSE = 64 * 1024 * 1024  # what a client accepts (1000 sessions are about 0.5 MB)
MAX_CONNECTIONS = 32  # concurrent control connections; more are answered with an error
IDLE_TIMEOUT = 30.0

COMMANDS = (
    "health",
    "sessions",
    "stats",
    "kick",
    "reload",
    "drain",
    "undrain",
    "cert",
    "renew",
)

# The fields of one entry of the ``sessions`` response, in table order.
SESSION_FIELDS = (
    "id",  # int, unique for the daemon's lifetime
    "user",  # str, as authenticated (without a DOMAIN\ prefix)
    "peer",  # "host:port" ("[v6]:port") of the client's TCP connection
    "peer_host",
    "peer_port",
    "address",  # the tunnel address assigned
    "ipv6_prefix",  # the /64 routed to the session while IPV6CP is open ("" = none)
    "connected_since",  # float, Unix time the tunnel opened
    "duration",  # float, seconds since then
    "rx_bytes",  # IP bytes from the client, both families (without SSTP/PPP framing)
    "rx_packets",
    "tx_bytes",  # IP bytes to the client, both families
    "tx_packets",
    "rx6_bytes",  # the IPv6 part of rx_bytes
    "rx6_packets",
    "tx6_bytes",  # the IPv6 part of tx_bytes
    "tx6_packets",
    "dropped",  # packets dropped: spoofed source (either family), output queue overflow,
    # invalid IPv6 or Neighbor Discovery
    "auth_method",  # "eap-mschapv2" | "mschapv2" | "pap"
    "tls_version",  # "TLSv1.3", ... ("" without TLS)
    "tls_cipher",
    "binding_hash",  # crypto-binding hash protocol: "SHA256" | "SHA1"
    "cert_hash",  # hex of the certificate hash this session's binding was checked against
)


class ControlError(SstpdError):
    """A control request did not succeed."""


class DaemonUnreachable(ControlError):
    """No daemon answers on the socket (not running, wrong path, no permission)."""


class CommandFailed(ControlError):
    """The daemon answered ``{"ok": false, "error": ...}``; ``response`` is the whole answer."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(str(response.get("error", "failed")))
        self.response = response


def encode(obj: dict[str, Any]) -> bytes:
    """One protocol line: compact JSON (non-ASCII escaped) and a newline."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def decode_request(line: bytes) -> dict[str, Any]:
    """The request object of one line. Raises ValueError with a reason for the caller."""
    if len(line) > MAX_REQUEST:
        raise ValueError(f"request longer than {MAX_REQUEST} bytes")
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON object: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str):
        raise ValueError('missing "cmd"')
    if cmd not in COMMANDS:
        raise ValueError(f"unknown command {cmd!r} (known: {', '.join(COMMANDS)})")
    return obj


def default_socket_path(config_path: str | None = None) -> str:
    """The socket named by ``config_path`` (default: /etc/sstpd/sstpd.toml when it exists),
    else the built-in default. An unreadable or invalid config falls back to the default."""
    path = config_path or (DEFAULT_CONFIG_PATH if os.path.exists(DEFAULT_CONFIG_PATH) else None)
    if path is None:
        return DEFAULT_SOCKET
    try:
        return load_config(path).server.control_socket
    except SstpdError:
        if config_path is not None:
            raise
        return DEFAULT_SOCKET


def request(path: str, cmd: str, *, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send one request, return the daemon's answer (``ok`` true or false).

    Raises DaemonUnreachable when nothing usable answers on ``path``."""
    payload = encode({"cmd": cmd, **args})
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(payload)
            data = _read_line(s)
    except FileNotFoundError:
        raise DaemonUnreachable(f"{path}: no such socket (is sstpd running?)") from None
    except ConnectionRefusedError:
        raise DaemonUnreachable(f"{path}: connection refused (is sstpd running?)") from None
    except PermissionError:
        raise DaemonUnreachable(f"{path}: permission denied (root or the socket's group)") from None
    except TimeoutError:
        raise DaemonUnreachable(f"{path}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise DaemonUnreachable(f"{path}: {exc.strerror or exc}") from None
    try:
        obj = json.loads(data)
    except ValueError:
        raise DaemonUnreachable(f"{path}: the answer is not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        raise DaemonUnreachable(f"{path}: the answer is not a control response")
    return obj


def call(path: str, cmd: str, *, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Like :func:`request` but raises CommandFailed for ``{"ok": false}``."""
    obj = request(path, cmd, timeout=timeout, **args)
    if not obj["ok"]:
        raise CommandFailed(obj)
    return obj


def _read_line(s: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionResetError("the daemon closed the connection without an answer")
        end = chunk.find(b"\n")
        if end >= 0:
            chunks.append(chunk[:end])
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise ConnectionError(f"answer longer than {MAX_RESPONSE} bytes")
