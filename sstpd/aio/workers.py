"""``server.workers``: one supervisor, N worker processes that share the listening port.

Process model (``server.workers`` > 1; with 1 the daemon is the single process it always
was and nothing here runs):

* The **supervisor** (``sstpd.aio.supervisor``) is the process systemd starts
  (``sstpd serve``). It owns the public
  control socket, starts the workers as ``sstpd serve --worker`` subprocesses, restarts
  a worker that dies (its sessions are gone with it, the others keep theirs), fans
  SIGTERM / SIGHUP / ``reload`` / ``drain`` out to all of them, and tells systemd
  ``READY=1`` once every worker listens.
* Each **worker** is a complete daemon (``sstpd.aio.daemon.Daemon``, with the
  ``WorkerRole`` of this module) that binds the
  listen addresses with ``SO_REUSEPORT`` (the kernel spreads new connections over the
  workers), owns its own TUN device (``<interface>`` for worker 0, ``<interface>w1``,
  ...) and hands out dynamic addresses from its own slice of the pool
  (``sstpd.proto.pool.slice_pool``), whose routes point at its TUN: the kernel delivers
  each downlink packet to the process that holds the session, nothing crosses processes.
  A static per-user address (or a RADIUS Framed-IP-Address) is routed as a /32 to the
  TUN of the worker that got the session, added exclusively (``sstpd.aio.route``), so it
  is held by one session at a time across all workers.
* With ``tunnel.ipv6_pool`` the IPv6 pool is divided the same way
  (``sstpd.proto.pool6.slice_prefixes``): each worker hands out /64s from its own run of
  the pool, routed to its TUN, and a static per-user /64 (or a RADIUS
  Framed-IPv6-Prefix) gets an exclusive route to the TUN of the worker that holds the
  session (``RoutedPrefixPool``).
* Worker and supervisor talk over three inherited socketpairs: a stream carrying control
  requests in the ``sstpd.control`` line protocol (``$SSTPD_CONTROL_FD``; besides the
  public commands the ``LINK_COMMANDS``), a datagram
  socket for the worker's sd_notify messages (``$SSTPD_NOTIFY_FD``), and the registry
  link (``$SSTPD_REGISTRY_FD``, ``RegistryLink`` here, ``sstpd.aio.shared`` there).
* With ``radius.dae_listen`` the supervisor alone listens for Disconnect-Requests
  (``sstpd.aio.dae``) and asks every worker to end the sessions one names; the answer is
  Disconnect-ACK if any worker ended one.
* With ``[acme]`` the supervisor runs the ACME manager (``sstpd.aio.acme``): the
  TLS-ALPN-01 answer goes to every worker's TLS router (``acme-challenge`` over the
  control link, ``challenge_request``) before the CA is told to validate, since its
  validation connection lands on whichever worker the kernel picks; the http-01
  responder listens in the supervisor alone; a new certificate is written once and
  installed by the ``reload`` of every worker.

Limits are divided: worker i enforces its share of ``server.max_sessions``,
``limits.pending_total`` and ``limits.pending_per_source`` (the shares add up to the
configured totals, so the totals hold however the kernel spreads connections; one
worker may refuse while another still has room). ``auth.max_sessions_per_user`` and the
failed-login throttle are counted across the workers by the supervisor
(``sstpd.proto.registry``): a worker asks it before a password is checked and before a
login counts, and reports failures, successes, opens and closes; the supervisor pushes
source blocks (checked at accept) and the replacement of a session back. If the
supervisor does not answer in ``REGISTRY_TIMEOUT`` the login is refused (fail closed: it
is a local process that answers in microseconds, so silence means it is wedged, and
admitting then would lift both limits exactly when they cannot be checked). A dead
worker's sessions are released there, with an Accounting-Stop for each.

This module is the worker's side (and the pure arithmetic both sides share).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, TypeVar

from sstpd.aio import route
from sstpd.aio.control import error
from sstpd.config import Config
from sstpd.control import MAX_REQUEST, decode_request, encode
from sstpd.errors import SstpdError
from sstpd.proto.pool import AddressPool, PoolSlice, fit_slices, slice_pool
from sstpd.proto.pool6 import PrefixPool, PrefixSlice, fit_prefix_slices, slice_prefixes
from sstpd.records import (
    CertRecord,
    DrainRecord,
    HealthRecord,
    KickRecord,
    RecordError,
    ReloadRecord,
    StatsRecord,
)

log = logging.getLogger("sstpd")

ENV_WORKER = "SSTPD_WORKER"  # "index/count/generation"
ENV_CONTROL_FD = "SSTPD_CONTROL_FD"
ENV_NOTIFY_FD = "SSTPD_NOTIFY_FD"
ENV_REGISTRY_FD = "SSTPD_REGISTRY_FD"
REGISTRY_TIMEOUT = 5.0  # seconds the supervisor has to answer a registry question
WORKER_TIMEOUT = 10.0  # seconds a worker has to answer one control request
# one registry message at most (a login's RADIUS Class attributes, hex: a few KB)
REGISTRY_LINE = 1 << 20
IDS_PER_GENERATION = 1_000_000  # a restarted worker numbers its sessions from here on
# commands the supervisor sends a worker besides the public ones (sstpd.control.COMMANDS):
# "dae": end the sessions a RADIUS Disconnect-Request names (sstpd.aio.dae), answer "ended"
# "acme-challenge": install or remove a TLS-ALPN-01 answer (challenge_request)
LINK_COMMANDS = ("dae", "acme-challenge")
MAX_NAME = 253  # characters of a DNS name


def worker_count(config: Config) -> int:
    """How many workers run: ``server.workers`` (0 = one per CPU this process may use),
    at most one per slice the IPv4 pool (and the IPv6 pool, when set) allows."""
    wanted = config.server.workers or len(os.sched_getaffinity(0))
    tc = config.tunnel
    count = fit_slices(tc.pool, wanted, tc.reserved_addresses())
    if tc.ipv6_pool is not None:
        count = fit_prefix_slices(tc.ipv6_pool, count, _exclude6(config))
    return count


def _exclude6(config: Config) -> list[IPv6Address]:
    tc = config.tunnel
    return [tc.ipv6_address] if tc.ipv6_address is not None else []


def challenge_request(
    name: str, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> dict[str, Any]:
    """The link request that installs the TLS-ALPN-01 answer for ``name`` (its challenge
    certificate and key, PEM) in a worker's TLS router, or removes it (no PEMs). It is
    well under ``MAX_REQUEST``: an EC P-256 key and a certificate for one name."""
    req: dict[str, Any] = {"cmd": "acme-challenge", "name": name}
    if cert_pem is not None and key_pem is not None:
        req["cert"] = cert_pem.decode("ascii")
        req["key"] = key_pem.decode("ascii")
    return req


def decode_challenge(req: dict[str, Any]) -> tuple[str, tuple[bytes, bytes] | None]:
    """``(name, (cert_pem, key_pem))`` of an ``acme-challenge`` request, ``(name, None)``
    to remove it. Raises ValueError with the reason (never with the key's text)."""
    name = req.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isascii():
        raise ValueError('acme-challenge: "name" must be a DNS name')
    cert, key = req.get("cert"), req.get("key")
    if cert is None and key is None:
        return name, None
    for field, text, marker in (("cert", cert, "CERTIFICATE"), ("key", key, "PRIVATE KEY")):
        if not isinstance(text, str) or not text.isascii() or f"-----BEGIN {marker}" not in text:
            raise ValueError(f'acme-challenge: "{field}" must be a PEM {marker.lower()}')
    assert isinstance(cert, str) and isinstance(key, str)
    return name, (cert.encode("ascii"), key.encode("ascii"))


R = TypeVar("R", CertRecord, DrainRecord, HealthRecord, KickRecord, ReloadRecord, StatsRecord)


def worker_record(cls: type[R], index: int, answer: dict[str, Any] | None) -> R | None:
    """Worker ``index``'s answer as its record, for the supervisor's merged view: None
    when it did not answer or refused, or when the answer is not that record (logged; a
    worker runs the supervisor's code, so that is a bug, and the worker counts as not
    answering)."""
    if answer is None or not answer.get("ok"):
        return None
    try:
        return cls.from_json(answer)
    except RecordError as exc:
        log.warning("worker %d: unexpected answer: %s", index, exc)
        return None


def share(total: int, index: int, count: int, least: int = 1) -> int:
    """Worker ``index``'s part of ``total`` (the parts add up to ``total``)."""
    base, extra = divmod(total, count)
    return max(base + (1 if index < extra else 0), least)


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """What makes a worker process different from the single-process daemon."""

    index: int
    count: int
    generation: int  # 0 at start, +1 per restart of this worker
    part: PoolSlice
    control_fd: int
    registry_fd: int = -1
    part6: PrefixSlice | None = None  # its slice of tunnel.ipv6_pool (None: IPv4 only)

    @classmethod
    def from_env(cls, config: Config) -> WorkerRole:
        try:
            index, count, generation = (int(x) for x in os.environ[ENV_WORKER].split("/"))
            control_fd = int(os.environ[ENV_CONTROL_FD])
            registry_fd = int(os.environ[ENV_REGISTRY_FD])
        except (KeyError, ValueError):
            raise SstpdError("serve --worker is started by the supervisor only") from None
        tc = config.tunnel
        part = slice_pool(tc.pool, count, tc.reserved_addresses())[index]
        part6 = None
        if tc.ipv6_pool is not None:
            part6 = slice_prefixes(tc.ipv6_pool, count, _exclude6(config))[index]
        return cls(index, count, generation, part, control_fd, registry_fd, part6)

    def tun_name(self, interface: str) -> str:
        return interface if self.index == 0 else f"{interface}w{self.index}"

    def first_id(self) -> int:
        return self.generation * IDS_PER_GENERATION

    def session_id(self, n: int) -> int:
        """Session ids are unique across the workers: worker i uses i+1, i+1+count, ..."""
        return (self.first_id() + n - 1) * self.count + self.index + 1

    def localize(self, config: Config) -> Config:
        """The configuration this worker enforces: its share of the global limits."""
        i, n = self.index, self.count
        sc, lc = config.server, config.limits
        return dataclasses.replace(
            config,
            server=dataclasses.replace(sc, max_sessions=share(sc.max_sessions, i, n)),
            limits=dataclasses.replace(
                lc,
                pending_total=share(lc.pending_total, i, n),
                pending_per_source=share(lc.pending_per_source, i, n),
            ),
        )


class RoutedPool(AddressPool):
    """A worker's pool: dynamic addresses from its slice (routed to its TUN at start);
    any address asked for by name (static, Framed-IP-Address) gets an exclusive /32
    route to this worker's TUN while it is held.

    Static addresses of the users file are reserved in every worker, so no dynamic
    allocation can collide with them. A RADIUS Framed-IP-Address can lie in another
    worker's dynamic range: while ``claim_dynamic()`` is true (RADIUS is a backend) every
    dynamic address is claimed with a /32 too, and one another worker holds is skipped."""

    def __init__(
        self,
        network: IPv4Network,
        *,
        exclude: list[IPv4Address],
        part: PoolSlice,
        ifname: str,
        claim_dynamic: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(network, exclude=exclude, part=part)
        self.ifindex = socket.if_nametoindex(ifname)
        self.ifname = ifname
        self.claim_dynamic = claim_dynamic
        self._routed: set[IPv4Address] = set()

    def allocate(self, static: IPv4Address | None = None) -> IPv4Address | None:
        if static is None and self.claim_dynamic():
            for _ in range(self.size):
                addr = super().allocate()
                if addr is None:
                    return None
                if self._claim(addr, quiet=True):
                    return addr
            return None
        addr = super().allocate(static)
        if addr is None or static is None:
            return addr
        return addr if self._claim(addr) else None

    def _claim(self, addr: IPv4Address, quiet: bool = False) -> bool:
        """Route ``addr``/32 here unless another worker has; on failure it is released."""
        try:
            route.add_host_route(addr, self.ifindex)
        except FileExistsError:
            if not quiet:
                log.warning("address %s is held by a session of another worker", addr)
            super().release(addr)
            return False
        except OSError as exc:
            log.error("cannot route %s/32 to %s: %s", addr, self.ifname, exc)
            super().release(addr)
            return False
        self._routed.add(addr)
        return True

    def release(self, address: IPv4Address) -> None:
        if address in self._routed:
            self._routed.discard(address)
            try:
                route.del_host_route(address, self.ifindex)
            except OSError as exc:
                log.warning("removing the route %s/32 via %s: %s", address, self.ifname, exc)
        super().release(address)


class RoutedPrefixPool(PrefixPool):
    """A worker's IPv6 pool: dynamic /64s from its slice (routed to its TUN at start); a
    static per-user /64 gets an exclusive route to this worker's TUN while it is held, so
    one session at a time holds it across the workers. Static /64s of the users file are
    reserved in every worker: no dynamic allocation collides with them.

    A RADIUS Framed-IPv6-Prefix can lie in another worker's dynamic run: while
    ``claim_dynamic()`` is true (RADIUS is a backend) every dynamic /64 is claimed with a
    route of its own too, and one another worker holds is skipped (as ``RoutedPool``
    does for Framed-IP-Address)."""

    def __init__(
        self,
        network: IPv6Network,
        *,
        exclude: list[IPv6Address],
        part: PrefixSlice,
        ifname: str,
        claim_dynamic: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(network, exclude=exclude, part=part)
        self.ifindex = socket.if_nametoindex(ifname)
        self.ifname = ifname
        self.claim_dynamic = claim_dynamic
        self._routed: set[IPv6Network] = set()

    def allocate(self, static: IPv6Network | None = None) -> IPv6Network | None:
        if static is None and self.claim_dynamic():
            for _ in range(self.size):
                prefix = super().allocate()
                if prefix is None:
                    return None
                if self._claim(prefix, quiet=True):
                    return prefix
            return None
        prefix = super().allocate(static)
        if prefix is None or static is None:
            return prefix
        return prefix if self._claim(prefix) else None

    def _claim(self, prefix: IPv6Network, quiet: bool = False) -> bool:
        """Route ``prefix`` here unless another worker has; on failure it is released."""
        try:
            route.add_prefix_route(prefix, self.ifindex)
        except FileExistsError:
            if not quiet:
                log.warning("IPv6 prefix %s is held by a session of another worker", prefix)
            super().release(prefix)
            return False
        except OSError as exc:
            log.error("cannot route %s to %s: %s", prefix, self.ifname, exc)
            super().release(prefix)
            return False
        self._routed.add(prefix)
        return True

    def release(self, prefix: IPv6Network) -> None:
        if prefix in self._routed:
            self._routed.discard(prefix)
            try:
                route.del_prefix_route(prefix, self.ifindex)
            except OSError as exc:
                log.warning("removing the route %s via %s: %s", prefix, self.ifname, exc)
        super().release(prefix)


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
