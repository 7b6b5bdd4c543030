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
                       (``sstpd.records.HealthRecord``)
``sessions``           the open sessions (``SessionRecord``, fields in ``SESSION_FIELDS``)
``stats``              counters since start, closed sessions included (``StatsRecord``)
``kick`` [id | user]   graceful Call Disconnect of that session / all sessions of that user
                       (``KickRecord``)
``reload``             re-read config, certificate, key, users file; ``changed``,
                       ``needs_restart`` on success (``ReloadRecord``), the reason in
                       ``error`` on failure
``drain`` / ``undrain``  stop / resume accepting new sessions; existing ones continue
                       (the health and the open sessions: ``DrainRecord``)
``cert``               the served certificate (names, issuer, validity) and the ACME
                       state (next renewal, last error, counters; null without [acme]);
                       with server.workers > 1 also ``workers``: per worker the hash it
                       serves and the TLS-ALPN-01 validations it answered (``CertRecord``)
``renew``              start an ACME renewal now (answers at once, ``RenewRecord``; poll
                       ``cert``)

A request longer than ``MAX_REQUEST`` bytes, a line that is not a JSON object, an unknown
command or a bad argument gets ``{"ok": false, "error": ...}``; an over-long line also
ends the connection. A connection idle for ``IDLE_TIMEOUT`` seconds is closed.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import fields
from typing import Any

from sstpd.config import DEFAULT_CONFIG_PATH, ServerConfig, load_config
from sstpd.errors import SstpdError
from sstpd.records import SessionRecord

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

# The fields of one entry of the ``sessions`` response, in table order (the record's).
SESSION_FIELDS = tuple(f.name for f in fields(SessionRecord))


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


def decode_request(line: bytes, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request object of one line. Raises ValueError with a reason for the caller.
    ``extra``: commands known besides ``COMMANDS`` (the supervisor's link to a worker)."""
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
    if cmd not in COMMANDS and cmd not in extra:
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
