"""The certificate side of the supervisor of ``server.workers``: ``[acme]`` and ``cert``.

With ``[acme]`` the supervisor, not a worker, runs the ACME manager (``sstpd.aio.acme``):
``SupervisorAcme`` is its ``AcmeSite``. ``ChallengeFanout`` puts each TLS-ALPN-01 answer
into every worker's TLS router (the link-only ``acme-challenge`` command), the http-01
responder listens here (bound once), and a new certificate, written once, is installed
by the supervisor's ``reload`` (every worker's). ``cert`` shows the certificate files
and what each worker serves, with or without ``[acme]``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING, Any

from sstpd.aio.control import error
from sstpd.aio.tls import cert_summary
from sstpd.aio.workers_link import WORKER_TIMEOUT, challenge_request, worker_record
from sstpd.config import Config
from sstpd.records import CertificateRecord, CertRecord, WorkerCertRecord
from sstpd.records_link import ChallengeRecord, ChallengeRequest

if TYPE_CHECKING:
    from sstpd.aio.acme import AcmeManager
    from sstpd.aio.supervisor import Supervisor
    from sstpd.aio.supervisor_worker import Answers, Worker

# how long the order's thread waits for every worker (each has WORKER_TIMEOUT), plus slack
FANOUT_SLACK = 5.0


class ChallengeFanout:
    """The supervisor's ``acme.ChallengeRouter``: each TLS-ALPN-01 answer goes to the
    TLS router of every worker (``acme-challenge`` over its control link), since the CA's
    validation connection lands on whichever worker the kernel picks. ``add_challenge``
    runs in the ACME order's thread and returns once every running worker has it (the
    order then tells the CA to validate); a running worker that does not take it fails the
    attempt (the manager's backoff retries; a worker took it when its answer, the names
    its router answers for, includes this one). A worker restarted meanwhile gets the
    pending answers when it is ready (``replay``)."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self._pending: dict[str, tuple[bytes, bytes]] = {}

    @property
    def pending(self) -> list[str]:
        return sorted(self._pending)

    def add_challenge(self, name: str, cert_pem: bytes, key_pem: bytes) -> None:
        self._pending[name.lower()] = (cert_pem, key_pem)
        failed = self._send(ChallengeRequest.of(name, cert_pem, key_pem))
        if failed:
            from sstpd.acmeclient import AcmeFailure  # [acme] only: an optional extra

            raise AcmeFailure(f"worker {', '.join(failed)} did not take the challenge")

    def remove_challenge(self, name: str) -> None:
        self._pending.pop(name.lower(), None)
        self._send(ChallengeRequest.of(name))

    def _send(self, req: ChallengeRequest) -> list[str]:
        """Ask every worker from the order's thread; the running workers that failed: did
        not answer, refused, or answered with a ``ChallengeRecord`` whose ``pending``
        names do not show the change (the name missing after an install, still there
        after a removal)."""
        ask = self.sup.ask_all(req.to_request())
        try:
            fut = asyncio.run_coroutine_threadsafe(ask, self.sup.loop)
        except RuntimeError:  # the loop is closed: the supervisor is stopping
            ask.close()
            return ["(all: stopping)"]
        try:
            answers = fut.result(WORKER_TIMEOUT + FANOUT_SLACK)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return ["(all)"]
        name, install = req.name.lower(), req.pems is not None
        failed = []
        for w, a in answers:
            rec = worker_record(ChallengeRecord, w.index, a)
            if w.alive and (rec is None or (name in rec.pending) != install):
                failed.append(str(w.index))
        return failed

    async def replay(self, w: Worker) -> None:
        for name, (cert_pem, key_pem) in list(self._pending.items()):
            await w.call(challenge_request(name, cert_pem, key_pem))


class SupervisorAcme:
    """The supervisor's ``AcmeSite`` (``config``, ``router``, ``cert_summary``,
    ``reload``) and its certificate view. ``cert_summary`` is the supervisor's view of
    the files, which every worker loaded at its last reload; it drives the schedule."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.router = ChallengeFanout(sup)
        self.cert_summary = cert_summary(sup.config)
        self.manager: AcmeManager | None = None
        if sup.config.acme.enabled:
            from sstpd.aio.daemon import acme_manager  # daemon imports the supervisor

            self.manager = acme_manager(self)

    @property
    def config(self) -> Config:
        return self.sup.config

    async def reload(self) -> dict[str, Any]:
        """The manager's install: the supervisor's reload, so every worker's."""
        return await self.sup.reload()

    def reloaded(self) -> None:
        """Every worker reloaded: they now serve what the files hold."""
        self.cert_summary = cert_summary(self.sup.config)

    # ------------------------------------------------ the supervisor's lifecycle
    async def start(self) -> None:
        """Once every worker is ready; the http-01 responder binds here, once (OSError)."""
        if self.manager is not None:
            await self.manager.start()

    def worker_ready(self, w: Worker) -> None:
        """A worker restarted during a validation gets the pending answers."""
        if self.router.pending:
            self.sup.background(self.router.replay(w))

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()

    # ------------------------------------------------ control
    def renew(self) -> dict[str, Any]:
        if self.manager is None:
            return error("ACME is not configured (no [acme] names)")
        return {"ok": True, **self.manager.renew_now().to_json()}

    def counts(self) -> tuple[int, int] | None:
        """``acme_renewals`` and ``acme_renewal_failures``, the supervisor's (not a
        worker's); None without [acme]."""
        if self.manager is None:
            return None
        return self.manager.renewals, self.manager.renewal_failures

    def merge_cert(self, answers: Answers) -> dict[str, Any]:
        """``cert``: the certificate files, what each worker serves, the ACME state."""
        served = []
        for w, a in answers:
            rec = worker_record(CertRecord, w.index, a)
            if rec is None:
                served.append(WorkerCertRecord(worker=w.index, running=False))
                continue
            served.append(
                WorkerCertRecord(
                    worker=w.index,
                    running=True,
                    sha256=rec.certificate.sha256 if rec.certificate is not None else "",
                    challenge_handshakes=rec.challenge_handshakes,
                )
            )
        summary = self.cert_summary
        merged = CertRecord(
            certificate=CertificateRecord.from_json(summary) if summary is not None else None,
            path=self.sup.config.server.certificate if summary is not None else "",
            acme=self.manager.status() if self.manager is not None else None,
            challenge_handshakes=sum(x.challenge_handshakes for x in served),  # all workers'
            workers=tuple(served),
        )
        return {"ok": True, **merged.to_json()}
