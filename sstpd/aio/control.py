"""The daemon's end of the control socket (protocol: ``sstpd.control``).

Requests are handled on the event loop by ``handler`` (a coroutine function for the
supervisor of several workers, which asks each of them); a handler exception becomes
``{"ok": false, "error": "internal error: ..."}`` and is logged, the daemon goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import inspect
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from typing import Any

from sstpd.control import IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_REQUEST, decode_request, encode

log = logging.getLogger("sstpd.control")

Handler = Callable[[dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]


def error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class ControlServer:
    def __init__(self, path: str, handler: Handler, group: str = "") -> None:
        self.path = path
        self.handler = handler
        self.group = group
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        gid = _group_id(self.group) if self.group else -1
        parent = os.path.dirname(self.path) or "."
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o750)
            if gid >= 0:
                os.chown(parent, -1, gid)
        _remove_stale(self.path)
        # the socket is created with the umask's mode: never wider than 0660, even briefly
        old = os.umask(0o117)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, self.path, limit=MAX_REQUEST
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        if gid >= 0:
            os.chown(self.path, -1, gid)
        log.info("control socket %s", self.path)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        for writer in self._writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if len(self._writers) > MAX_CONNECTIONS:
                writer.write(encode(error("too many control connections")))
                await writer.drain()
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(encode(error(f"request longer than {MAX_REQUEST} bytes")))
                    await writer.drain()
                    return
                except TimeoutError:
                    return
                if not line.strip():
                    if not line:
                        return  # EOF
                    continue
                answer = self.handle(line)
                if inspect.isawaitable(answer):
                    try:
                        answer = await answer
                    except Exception as exc:  # as in handle(): the daemon goes on
                        log.exception("control command failed")
                        answer = error(f"internal error: {exc}")
                writer.write(encode(answer))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def handle(self, line: bytes) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """The response to one request line (or what to await for it); never raises."""
        try:
            req = decode_request(line.rstrip(b"\r\n"))
        except ValueError as exc:
            return error(str(exc))
        try:
            return self.handler(req)
        except Exception as exc:  # a bug in a command must not take the daemon down
            log.exception("control command %r failed", req.get("cmd"))
            return error(f"internal error: {exc}")


def _group_id(group: str) -> int:
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"server.control_group: no group {group!r}") from None


def _remove_stale(path: str) -> None:
    """Remove a socket left behind by a previous run; refuse to replace anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ValueError(f"server.control_socket: {path} exists and is not a socket")
    os.unlink(path)
