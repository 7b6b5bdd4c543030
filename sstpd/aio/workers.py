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
  link (``$SSTPD_REGISTRY_FD``, ``RegistryLink`` in ``sstpd.aio.workers_link``,
  ``sstpd.aio.shared`` there).
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

This module is the worker's side (and the pure arithmetic both sides share): its role
(``WorkerRole``: TUN name, pool slices, limit shares, session ids) and ``worker_count``.
The links between the processes are ``sstpd.aio.workers_link``, the worker's routed
pools ``sstpd.aio.workers_pool``; their names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import os
from ipaddress import IPv6Address

from sstpd.aio.workers_link import (
    LINK_COMMANDS,
    MAX_NAME,
    REGISTRY_LINE,
    REGISTRY_TIMEOUT,
    WORKER_TIMEOUT,
    LinkControl,
    R,
    RegistryLink,
    challenge_request,
    decode_challenge,
    worker_record,
)
from sstpd.aio.workers_pool import RoutedPool, RoutedPrefixPool
from sstpd.config import Config
from sstpd.errors import SstpdError
from sstpd.proto.pool import PoolSlice, fit_slices, slice_pool
from sstpd.proto.pool6 import PrefixSlice, fit_prefix_slices, slice_prefixes

__all__ = [
    "ENV_CONTROL_FD",
    "ENV_NOTIFY_FD",
    "ENV_REGISTRY_FD",
    "ENV_WORKER",
    "IDS_PER_GENERATION",
    "LINK_COMMANDS",
    "MAX_NAME",
    "REGISTRY_LINE",
    "REGISTRY_TIMEOUT",
    "WORKER_TIMEOUT",
    "LinkControl",
    "R",
    "RegistryLink",
    "RoutedPool",
    "RoutedPrefixPool",
    "WorkerRole",
    "challenge_request",
    "decode_challenge",
    "share",
    "worker_count",
    "worker_record",
]

ENV_WORKER = "SSTPD_WORKER"  # "index/count/generation"
ENV_CONTROL_FD = "SSTPD_CONTROL_FD"
ENV_NOTIFY_FD = "SSTPD_NOTIFY_FD"
ENV_REGISTRY_FD = "SSTPD_REGISTRY_FD"
IDS_PER_GENERATION = 1_000_000  # a restarted worker numbers its sessions from here on


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
