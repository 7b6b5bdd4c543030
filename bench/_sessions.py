"""Many in-process client sessions (the package's client, no TUN), driven over stdin.

Run inside the client namespace by bench/handshakes.py and bench/memory.py::

    python3 bench/_sessions.py --host H --ca-file F [--user alice --password ...]

Each stdin line is a command, each answered by one JSON line on stdout:

* ``open N C``: open N more sessions, at most C handshakes at a time;
  answers ``{"opened": n, "errors": k, "first_errors": [...], "seconds": s, "total": t}``;
* ``close``: graceful disconnect of every open session (Call Disconnect), at most 200 at
  a time; answers ``{"closed": n, "seconds": s}``;
* ``rss``: answers ``{"rss_kib": ...}`` (this process);
* ``echo K W``: every open session sends K ICMP echo requests of 100 bytes to the server's
  tunnel address, at most W outstanding per session, and counts the replies (the kernel
  answers them: one packet in, one packet out through the server per echo); answers
  ``{"sent": n, "replies": r, "seconds": s}``;
* ``burst N SIZE``: every open session sends N ICMP echo requests of SIZE bytes (IP) to the
  server's tunnel address in one batch (one write, so one TLS record up to 16 KiB each)
  and waits for the replies, at most 200 sessions at a time; answers
  ``{"sessions": s, "replies": r, "seconds": t}``.

The client keeps its cost low: uvloop when installed; its sessions share one receive
buffer, as the daemon's do (``sstpd.aio.protocol``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sstpd.aio.client import ClientOptions, Tunnel  # noqa: E402
from tests.integration.client_tool import icmp_echo  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def main_async(a: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    tunnels: list[Tunnel] = []
    opts = ClientOptions(
        host=a.host,
        port=a.port,
        user=a.user,
        password=a.password,
        ca_file=a.ca_file,
        timeout=a.timeout,
    )

    async def open_many(n: int, concurrency: int) -> dict[str, object]:
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one() -> None:
            async with sem:
                try:
                    tunnels.append(await Tunnel.open(opts))
                except Exception as exc:  # counted and reported
                    errors.append(repr(exc))

        t0 = time.monotonic()
        before = len(tunnels)
        await asyncio.gather(*(one() for _ in range(n)))
        return {
            "opened": len(tunnels) - before,
            "errors": len(errors),
            "first_errors": errors[:3],
            "seconds": round(time.monotonic() - t0, 3),
            "total": len(tunnels),
        }

    async def close_all() -> dict[str, object]:
        sem = asyncio.Semaphore(200)

        async def one(t: Tunnel) -> None:
            async with sem:
                await t.close(timeout=5)

        t0 = time.monotonic()
        n = len(tunnels)
        await asyncio.gather(*(one(t) for t in tunnels))
        tunnels.clear()
        return {"closed": n, "seconds": round(time.monotonic() - t0, 3)}

    async def echo(count: int, window: int) -> dict[str, object]:
        payload = b"e" * 72

        async def one(i: int, t: Tunnel) -> int:
            ident = 0x4000 + (i & 0x3FFF)
            got = sent = 0
            while got < count:
                while sent < count and sent - got < window:
                    t.send_ip(icmp_echo(t.local_address, t.peer_address, ident, sent, payload))
                    sent += 1
                try:
                    pkt = await t.recv_ip(5.0)
                except TimeoutError:
                    break  # lost: stop this session here, count what came back
                if len(pkt) >= 28 and pkt[9] == 1 and pkt[20] == 0:  # ICMP echo reply
                    got += 1
            return got

        t0 = time.monotonic()
        replies = await asyncio.gather(*(one(i, t) for i, t in enumerate(tunnels)))
        return {
            "sent": count * len(tunnels),
            "replies": sum(replies),
            "seconds": round(time.monotonic() - t0, 3),
        }

    async def burst_all(n: int, size: int) -> dict[str, object]:
        sem = asyncio.Semaphore(200)

        async def one(i: int, t: Tunnel) -> int:
            async with sem:
                data = bytes(size - 28)
                t.proto.send_ip_batch(
                    [icmp_echo(t.local_address, t.peer_address, i, k, data) for k in range(n)]
                )
                got = 0
                while got < n:
                    try:
                        await t.recv_ip(10.0)
                    except TimeoutError:
                        break
                    got += 1
                return got

        t0 = time.monotonic()
        got = await asyncio.gather(*(one(i, t) for i, t in enumerate(tunnels)))
        return {
            "sessions": len(tunnels),
            "replies": sum(got),
            "seconds": round(time.monotonic() - t0, 3),
        }

    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "open":
            out = await open_many(int(cmd[1]), int(cmd[2]))
        elif cmd[0] == "close":
            out = await close_all()
        elif cmd[0] == "echo":
            out = await echo(int(cmd[1]), int(cmd[2]))
        elif cmd[0] == "burst":
            out = await burst_all(int(cmd[1]), int(cmd[2]))
        elif cmd[0] == "rss":
            out = {"rss_kib": rss_kib()}
        else:
            out = {"error": f"unknown command {cmd[0]!r}"}
        print(json.dumps(out), flush=True)
    await close_all()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="alice-secret")
    p.add_argument("--ca-file")
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.run(main_async(a))
    except ImportError:
        asyncio.run(main_async(a))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
