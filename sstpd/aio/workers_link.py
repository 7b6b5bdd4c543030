"""The links between a worker and its supervisor (``server.workers``, see
``sstpd.aio.workers``): their limits and timeouts, the link-only commands
(``LINK_COMMANDS``, whose requests and answers are ``sstpd.records_link``'s records) and
the ``acme-challenge`` codec, the supervisor's reading of a worker's answer
(``worker_record``, ``worker_answer``), and the worker's ends of the control link
(``LinkControl``) and of the registry link (``RegistryLink``; the supervisor's end is
``sstpd.aio.shared``).

Separate from ``sstpd.aio.workers`` (what a worker is: its role, slices and shares) because
this is the wire between the two processes, which both sides import.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from sstpd.aio.control import error
from sstpd.control import MAX_REQUEST, decode_request, encode
from sstpd.records import (
    CertRecord,
    DrainRecord,
    HealthRecord,
    KickRecord,
    RecordError,
    ReloadRecord,
    StatsRecord,
)
from sstpd.records_link import MAX_NAME, ChallengeRecord, ChallengeRequest, DaeRecord

__all__ = [
    "LINK_COMMANDS",
    "MAX_NAME",
    "REGISTRY_LINE",
    "REGISTRY_TIMEOUT",
    "WORKER_TIMEOUT",
    "LinkControl",
    "R",
    "RegistryLink",
    "challenge_request",
    "decode_challenge",
    "worker_answer",
    "worker_record",
]

log = logging.getLogger("sstpd")

REGISTRY_TIMEOUT = 5.0  # seconds the supervisor has to answer a registry question
WORKER_TIMEOUT = 10.0  # seconds a worker has to answer one control request
# one registry message at most (a login's RADIUS Class attributes, hex: a few KB)
REGISTRY_LINE = 1 << 20
# commands the supervisor sends a worker besides the public ones (sstpd.control.COMMANDS):
# "dae": end the sessions a RADIUS Disconnect-Request names (sstpd.aio.dae), answer "ended"
# "acme-challenge": install or remove a TLS-ALPN-01 answer (challenge_request), answer
#   "pending" (requests and answers: sstpd.records_link)
# "traffic": each open session's counters, for a dead worker's Stops (sstpd.aio.refresh)
LINK_COMMANDS = ("dae", "acme-challenge", "traffic")


def challenge_request(
    name: str, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> dict[str, Any]:
    """The link request that installs the TLS-ALPN-01 answer for ``name`` (its challenge
    certificate and key, PEM) in a worker's TLS router, or removes it (no PEMs): a
    ``sstpd.records_link.ChallengeRequest``."""
    return ChallengeRequest.of(name, cert_pem, key_pem).to_request()


def decode_challenge(req: dict[str, Any]) -> tuple[str, tuple[bytes, bytes] | None]:
    """``(name, (cert_pem, key_pem))`` of an ``acme-challenge`` request, ``(name, None)``
    to remove it. Raises ValueError with the reason (never with the key's text)."""
    try:
        rec = ChallengeRequest.from_json(req)
    except RecordError as exc:
        raise ValueError(str(exc)) from None
    return rec.name, rec.pems


R = TypeVar(
    "R",
    CertRecord,
    ChallengeRecord,
    DaeRecord,
    DrainRecord,
    HealthRecord,
    KickRecord,
    ReloadRecord,
    StatsRecord,
)
T = TypeVar("T")


def worker_answer(
    decode: Callable[[object], T], index: int, answer: dict[str, Any] | None
) -> T | None:
    """Worker ``index``'s answer as ``decode`` reads it (a record's ``from_json``,
    ``sstpd.records.sessions_from_json``), for the supervisor's merged view: None when it
    did not answer or refused, or when ``decode`` raises ``RecordError`` (logged; a worker
    runs the supervisor's code, so that is a bug, and the worker counts as not
    answering)."""
    if answer is None or not answer.get("ok"):
        return None
    try:
        return decode(answer)
    except RecordError as exc:
        log.warning("worker %d: unexpected answer: %s", index, exc)
        return None


def worker_record(cls: type[R], index: int, answer: dict[str, Any] | None) -> R | None:
    """Worker ``index``'s answer as its record (``worker_answer``)."""
    return worker_answer(cls.from_json, index, answer)


class LinkControl:
    """The worker's end of the control link: answers the supervisor's requests with the
    same handler the public socket uses in a single process; the link's end (the
    supervisor is gone) stops the worker."""

    def __init__(
        self,
        fd: int,
        handler: Callable[[dict[str, Any]], dict[str, Any]],
        on_lost: Callable[[], None],
    ) -> None:
        self.fd = fd
        self.handler = handler
        self.on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        sock = socket.socket(fileno=self.fd)
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_REQUEST)
        self._writer = writer
        self._task = asyncio.get_running_loop().create_task(self._serve(reader, writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    req = decode_request(line.rstrip(b"\n"), LINK_COMMANDS)
                    answer = self.handler(req)
                except ValueError as exc:
                    answer = error(str(exc))
                except Exception as exc:  # a bug in a command must not end the worker
                    log.exception("control command failed")
                    answer = error(f"internal error: {exc}")
                writer.write(encode(answer))
                await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass
        log.warning("the supervisor is gone: stopping")
        self.on_lost()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()


class RegistryLink:
    """The worker's end of the registry link: it tells the supervisor's
    ``sstpd.proto.registry.Registry`` about logins and sessions (``send``), asks it
    before a password is checked or a login counts (``ask``: the answer, or None when
    none came in ``REGISTRY_TIMEOUT``), and hands what the supervisor pushes unasked
    (``{"push": "block", ...}``, ``{"push": "kick", ...}``) to ``on_push``.

    One line of JSON per message, both ways (``sstpd.control.encode``). Requests that
    want an answer carry ``seq``; the answer carries the same ``seq``."""

    def __init__(self, fd: int, on_push: Callable[[dict[str, Any]], None]) -> None:
        self.fd = fd
        self.on_push = on_push
        self._seq = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sock = socket.socket(fileno=self.fd)
        sock.setblocking(False)
        reader, self._writer = await asyncio.open_unix_connection(sock=sock, limit=REGISTRY_LINE)
        self._task = asyncio.get_running_loop().create_task(self._read(reader))

    def send(self, msg: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(encode(msg))

    async def ask(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        if self._writer is None or self._writer.is_closing():
            return None
        self._seq += 1
        seq = self._seq
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = fut
        self.send({**msg, "seq": seq})
        try:
            return await asyncio.wait_for(fut, REGISTRY_TIMEOUT) or None  # {}: link lost
        except TimeoutError:
            log.error("the supervisor did not answer %r in %g s", msg.get("op"), REGISTRY_TIMEOUT)
            return None
        finally:
            self._waiting.pop(seq, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(obj, dict):
                    continue
                if "push" in obj:
                    try:
                        self.on_push(obj)
                    except Exception:  # a bug in a handler must not end the link
                        log.exception("registry push %r failed", obj.get("push"))
                    continue
                fut = self._waiting.get(obj.get("seq", -1))
                if fut is not None and not fut.done():
                    fut.set_result(obj)
        except (ConnectionError, OSError, ValueError):
            pass
        # the supervisor is gone: LinkControl stops the worker; nothing waits meanwhile
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_result({})

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()
