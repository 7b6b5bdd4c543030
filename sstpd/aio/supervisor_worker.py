"""The supervisor's handle on one worker process of ``server.workers``, and its answers.

``Worker`` is what the supervisor (``aio.supervisor``) keeps per worker: the process,
the control link it asks over (one request at a time, ``WORKER_TIMEOUT`` for an answer),
the notify socket's ``ready``, and the restart bookkeeping (``RESTART_DELAY`` doubling up
to ``RESTART_DELAY_MAX``, back to the first after ``STABLE_AFTER``). ``Answers`` and
``Records`` are what a fan-out to every worker returns. It is separate because both the
process lifecycle (``aio.supervisor``) and the control fan-out (``aio.supervisor_control``,
``supervisor_acme``) use it, and neither needs the other to.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from sstpd.aio.workers_link import WORKER_TIMEOUT, R, worker_record
from sstpd.control import encode
from sstpd.records import StatsRecord

RESTART_DELAY = 1.0  # first wait before restarting a dead worker, doubled up to ...
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 60.0  # ... and back to the first once a worker ran this long


class Worker:
    """The supervisor's handle on one worker process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = -1
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.notify: socket.socket | None = None
        self.lock = asyncio.Lock()
        self.ready = asyncio.Event()
        self.restarts = 0
        self.started = 0.0
        self.delay = RESTART_DELAY
        self.last_stats: StatsRecord | None = None  # its last stats answer (for retire)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def call(self, req: dict[str, Any]) -> dict[str, Any] | None:
        """The worker's answer, or None when it is not running or does not answer."""
        if not self.alive or self.writer is None or self.reader is None:
            return None
        async with self.lock:
            try:
                self.writer.write(encode(req))
                await self.writer.drain()
                line = await asyncio.wait_for(self.reader.readline(), WORKER_TIMEOUT)
            except (OSError, ConnectionError, TimeoutError, ValueError):
                return None
        if not line:
            return None
        try:
            obj = decode_answer(line)
        except ValueError:
            return None
        return obj


# each worker with its answer to one request (None: not running, or no answer)
Answers = list[tuple[Worker, dict[str, Any] | None]]
# ... as its record (None as well: it refused, or the answer is not that record)
Records = list[tuple[Worker, R | None]]


def records(cls: type[R], answers: Answers) -> Records[R]:
    """Each worker's answer as its record (``workers.worker_record``)."""
    return [(w, worker_record(cls, w.index, a)) for w, a in answers]


def decode_answer(line: bytes) -> dict[str, Any]:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return obj
