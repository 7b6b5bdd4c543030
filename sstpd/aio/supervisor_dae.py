"""The supervisor's Disconnect-Request listener (``radius.dae_listen``, RFC 5176).

With ``server.workers`` the supervisor alone listens, so a Disconnect-Request is answered
once whichever worker holds the sessions. ``sstpd.aio.dae.DaeServer`` keeps the checks,
the answers and the cached answer for a retransmission; ``DaeFanout.disconnect`` is its
``disconnect``: every worker is asked over the link-only ``dae`` command (the criteria as
``criteria_to_json`` writes them) and the sessions they ended are added up.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sstpd.aio.dae import DaeServer, criteria_to_json
from sstpd.config import RadiusConfig
from sstpd.proto import aaa

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
        answers = await self.sup.ask_all({"cmd": "dae", **criteria_to_json(criteria)})
        ended = 0
        for w, a in answers:
            if a is None or not a.get("ok"):
                reason = a.get("error", "failed") if a else "does not answer"
                log.warning("Disconnect-Request: worker %d: %s", w.index, reason)
                continue
            ended += int(a.get("ended", 0))
        return ended
