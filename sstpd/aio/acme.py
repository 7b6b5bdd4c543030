"""The daemon's ACME manager: obtain, renew and install the certificate of ``[acme]``.

One task on the event loop decides when (:func:`sstpd.acmeclient.renewal_time`: at once
without a certificate from the CA for the configured names, else two thirds into its
lifetime, or earlier when the CA's renewal information suggests it (ARI: asked at start,
after each new certificate and every ``RECHECK``); after failures exponential backoff
from ``acme.retry_interval`` up to a day; ``sstpctl cert renew`` at once). The order
itself (:func:`sstpd.acmeclient.obtain`, blocking HTTP) runs in a daemon thread of its
own: never on the event loop, and a shutdown does not wait for a CA that is slow to
answer. The answers to the challenges go to the TLS router (tls-alpn-01, on the SSTP
listener) or to a small HTTP responder on ``acme.http_port`` (http-01). A new
certificate is written to ``server.certificate`` and ``server.key`` and installed with
the daemon's live reload: open sessions keep the binding hashes they started with, new
sessions use the new certificate. On failure the current certificate stays in service
and the reason is logged and shown by ``sstpctl cert``.

The manager runs in exactly one process, its ``AcmeSite``: the daemon when it is the only
process, the supervisor with ``server.workers`` > 1 (``sstpd.aio.supervisor``), whose
``router`` hands each challenge to every worker's TLS router before the CA is told to
validate and whose ``reload`` reloads every worker: the files are written once, by the
manager's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from sstpd import acmeclient
from sstpd.config import Config
from sstpd.files import write_atomic
from sstpd.records import AcmeRecord, RenewRecord

log = logging.getLogger("sstpd")

RECHECK = 6 * 3600.0  # look at the certificate again at least this often
HTTP_TIMEOUT = 10.0
HTTP_MAX_HEADER_LINES = 100
CHALLENGE_PATH = "/.well-known/acme-challenge/"

_T = TypeVar("_T")


def in_thread(fn: Callable[[], _T]) -> asyncio.Future[_T]:
    """Run ``fn`` in a new daemon thread; its result or exception in the future."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def run() -> None:
        try:
            result: tuple[bool, Any] = (True, fn())
        except BaseException as exc:
            result = (False, exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, *result)

    threading.Thread(target=run, name="sstpd-acme", daemon=True).start()
    return fut


class ChallengeRouter(Protocol):
    """Where TLS-ALPN-01 answers go (``sstpd.aio.tlsroute.TlsRouter`` in one process).
    ``add_challenge`` returns once the answer is served (it is called from the order's
    thread and may block); it raises ``acmeclient.AcmeFailure`` when it cannot be."""

    def add_challenge(self, name: str, cert_pem: bytes, key_pem: bytes) -> None: ...
    def remove_challenge(self, name: str) -> None: ...
    @property
    def pending(self) -> list[str]: ...


class AcmeSite(Protocol):
    """The process the manager runs in: the daemon, or the supervisor of the workers."""

    @property
    def config(self) -> Config: ...
    @property
    def router(self) -> ChallengeRouter: ...
    @property
    def cert_summary(self) -> dict[str, Any] | None: ...
    def reload(self) -> dict[str, Any] | Awaitable[dict[str, Any]]: ...


class AcmeManager:
    def __init__(self, server: AcmeSite) -> None:
        self.server = server
        self.cfg = server.config.acme
        self.http_tokens: dict[str, str] = {}
        self.next_renewal: float | None = None
        self.last_attempt: float | None = None
        self.last_success: float | None = None
        self.last_error = ""
        self.in_progress = False
        self.failures = 0  # consecutive
        self.renewals = 0
        self.renewal_failures = 0
        self.ari: float | None = None  # the CA's suggested renewal time
        self._ari_checked: float | None = None  # when, and for which certificate
        self._ari_sha256 = ""
        self._force = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: list[asyncio.Server] = []

    # ------------------------------------------------ ChallengeHost (worker thread)
    def add_tls_alpn(self, name: str, cert_pem: bytes, key_pem: bytes) -> None:
        self.server.router.add_challenge(name, cert_pem, key_pem)

    def remove_tls_alpn(self, name: str) -> None:
        self.server.router.remove_challenge(name)

    def add_http(self, token: str, key_authorization: str) -> None:
        self.http_tokens[token] = key_authorization

    def remove_http(self, token: str) -> None:
        self.http_tokens.pop(token, None)

    # ------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.cfg.challenge == acmeclient.HTTP_01:
            for addr in self.server.config.server.listen:
                srv = await asyncio.start_server(
                    self._http_client, str(addr), self.cfg.http_port, reuse_address=True
                )
                self._http.append(srv)
            log.info("ACME: http-01 responder on port %d", self.cfg.http_port)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        for srv in self._http:
            srv.close()

    def renew_now(self) -> RenewRecord:
        """The ``renew`` command: a renewal now, unless one is in progress."""
        if self.in_progress:
            return RenewRecord(started=False, message="a renewal is in progress")
        self._force = True
        self._wake.set()
        return RenewRecord(started=True, message="renewal started")

    def status(self) -> AcmeRecord:
        """The ``acme`` part of the ``cert`` answer."""
        return AcmeRecord(
            names=tuple(self.cfg.names),
            directory=self.cfg.directory,
            challenge=self.cfg.challenge,
            next_renewal=self.next_renewal,
            last_attempt=self.last_attempt,
            last_success=self.last_success,
            last_error=self.last_error,
            in_progress=self.in_progress,
            renewals=self.renewals,
            renewal_failures=self.renewal_failures,
            ari_suggestion=self.ari,
            pending_challenges=tuple(self.server.router.pending),
        )

    # ------------------------------------------------ scheduling
    def due(self) -> float:
        due = acmeclient.renewal_time(self.server.cert_summary, self.cfg.names)
        if self.ari is not None and due > 0:
            due = min(due, self.ari)
        if self.failures and self.last_attempt is not None:
            wait = acmeclient.backoff(self.failures, self.cfg.retry_interval)
            due = max(due, self.last_attempt + wait)
        return due

    async def _run(self) -> None:
        while not self._stopping:
            await self._ask_ari()
            due = self.due()
            self.next_renewal = due
            delay = due - time.time()
            if delay > 0 and not self._force:
                if self.failures == 0:
                    log.info(
                        "ACME: certificate for %s valid, renewal at %s",
                        ", ".join(self.cfg.names),
                        time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(due)),
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(delay, RECHECK))
                self._wake.clear()
                if not self._force and time.time() < due:
                    continue
            self._force = False
            await self._attempt()

    async def _ask_ari(self) -> None:
        """Fetch the CA's renewal information for a CA-issued certificate when it is new
        or ``RECHECK`` has passed."""
        summary = self.server.cert_summary
        if summary is None or summary["self_signed"]:
            return
        fresh = self._ari_checked is not None and time.time() - self._ari_checked < RECHECK
        if summary["sha256"] == self._ari_sha256 and fresh:
            return
        path = self.server.config.server.certificate
        cfg = self.cfg

        def ask() -> float | None:
            with open(path, "rb") as f:
                return acmeclient.ari_time(cfg, f.read())

        try:
            self.ari = await in_thread(ask)
        except OSError:
            self.ari = None
        self._ari_checked, self._ari_sha256 = time.time(), str(summary["sha256"])
        if self.ari is not None:
            log.info(
                "ACME: the CA suggests renewing at %s",
                time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.ari)),
            )

    async def _attempt(self) -> None:
        self.in_progress = True
        self.last_attempt = time.time()
        log.info(
            "ACME: requesting a certificate for %s from %s (%s)",
            ", ".join(self.cfg.names),
            self.cfg.directory,
            self.cfg.challenge,
        )
        state_dir = self.server.config.server.state_directory
        try:
            issued = await in_thread(
                lambda: acmeclient.obtain(self.cfg, state_dir, self, lambda: self._stopping)
            )
            await self._install(issued)
        except acmeclient.AcmeFailure as exc:
            self._failed(str(exc))
        except Exception as exc:  # a bug or an unexpected library error: not fatal
            log.exception("ACME: unexpected error")
            self._failed(f"internal error: {exc}")
        else:
            self.failures = 0
            self.last_error = ""
            self.last_success = time.time()
            self.renewals += 1
        finally:
            self.in_progress = False

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self.renewal_failures += 1
        self.last_error = reason
        wait = acmeclient.backoff(self.failures, self.cfg.retry_interval)
        log.error(
            "ACME: no certificate for %s: %s; still serving the current certificate, "
            "next attempt in %.0f s",
            ", ".join(self.cfg.names),
            reason,
            wait,
        )

    async def _install(self, issued: acmeclient.Issued) -> None:
        sc = self.server.config.server
        write_atomic(sc.key, issued.key_pem, 0o600)
        write_atomic(sc.certificate, issued.fullchain_pem, 0o644)
        reloaded = self.server.reload()  # the supervisor's: every worker's
        answer = reloaded if isinstance(reloaded, dict) else await reloaded
        if not answer["ok"]:
            raise acmeclient.AcmeFailure(
                f"certificate written to {sc.certificate} but the reload was rejected: "
                f"{answer['error']}"
            )
        summary = self.server.cert_summary or {}
        log.info(
            "ACME: installed the certificate for %s (order %s), sha256 %s, valid until %s",
            ", ".join(self.cfg.names),
            issued.order_url,
            summary.get("sha256", "?"),
            time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(summary.get("not_after", 0))),
        )

    # ------------------------------------------------ http-01
    async def _http_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                request = await reader.readline()
                for _ in range(HTTP_MAX_HEADER_LINES):
                    if (await reader.readline()).strip() == b"":
                        break
            parts = request.split()
            body = None
            if len(parts) >= 2 and parts[0] == b"GET":
                path = parts[1].decode("ascii", "replace")
                if path.startswith(CHALLENGE_PATH):
                    body = self.http_tokens.get(path[len(CHALLENGE_PATH) :])
            if body is None:
                writer.write(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            else:
                data = body.encode("ascii")
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                    + data
                )
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
