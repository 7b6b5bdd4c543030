"""The supervisor's Disconnect-Request listener (``radius.dae_listen``, RFC 5176).

With ``server.workers`` the supervisor alone listens, so a Disconnect-Request is answered
once whichever worker holds the sessions. ``sstpd.aio.dae.DaeServer`` keeps the checks,
the answers and the cached answer for a retransmission; ``DaeFanout.disconnect`` is its
``disconnect``: every worker is asked over the link-only ``dae`` command (a
``sstpd.records_link.DaeRequest``) and the sessions they ended (each one's ``DaeRecord``)
are added up; a worker that refuses, does not answer or answers something else counts
as having ended none, and is logged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sstpd.aio.dae import DaeServer
from sstpd.aio.workers_link import worker_record
from sstpd.config import RadiusConfig
from sstpd.proto import aaa
from sstpd.records_link import DaeRecord, DaeRequest

if TYPE_CHECKING:
    from sstpd.aio.supervisor import Supervisor

log = logging.getLogger("sstpd")


class DaeFanout:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.server: DaeServer | None = None

    async def open(self) -> None:
        """Listen when ``radius.dae_listen`` is set (OSError when it cannot)."""
        radius = self.sup.config.radius
        if radius.dae_listen is None:
            return
        self.server = DaeServer(radius, self.disconnect)
        await self.server.open()

    def reconfigure(self, radius: RadiusConfig) -> None:
        """After a reload: clients and secrets; the address needs a restart."""
        if self.server is not None:
            self.server.config = radius

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def disconnect(self, criteria: aaa.DisconnectCriteria) -> int:
        """A Disconnect-Request: every worker ends the sessions it names; how many ended."""
        answers = await self.sup.ask_all(DaeRequest.of(criteria).to_request())
        ended = 0
        for w, a in answers:
            if a is None or not a.get("ok"):
                reason = a.get("error", "failed") if a else "does not answer"
                log.warning("Disconnect-Request: worker %d: %s", w.index, reason)
                continue
            rec = worker_record(DaeRecord, w.index, a)  # None: logged there
            ended += rec.ended if rec is not None else 0
        return ended
