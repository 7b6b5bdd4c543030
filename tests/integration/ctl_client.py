"""A long-lived client session the control and status tests can steer, and its driver.

Run inside the client namespace::

    python3 -m tests.integration.ctl_client --host H --ca-file F --user U --password P

It connects with the package's client (no TUN), prints one JSON line
``{"event": "open", "local": ..., "port": <its TCP port>, "fingerprint": <SHA-256 of the
server certificate it saw>, "dns": [...]}``, then obeys stdin lines:

* ``ping N``: N ICMP echo requests of ``PING_SIZE`` bytes to the server's tunnel address;
  prints ``{"event": "ping", "sent": N, "replies": R}``;
* ``close``: graceful disconnect, prints ``{"event": "closed", ...}`` and exits.

When the server ends the session it prints ``{"event": "closed", "reason": ...}`` and exits.
With ``--once`` it connects, prints the "open" line (or ``{"event": "error", ...}``) and
disconnects.

``HeldClient`` (used by the tests, in the root namespace) starts and drives one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import queue
import subprocess
import sys
import threading
import time
from typing import Any

from sstpd.aio.client import ClientOptions, Tunnel
from tests.integration.client_tool import icmp_echo, is_echo_reply

PING_SIZE = 100  # bytes of each IPv4 echo request (and reply)


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


async def _ping(t: Tunnel, count: int, ident: int, timeout: float = 5.0) -> int:
    payload = b"p" * (PING_SIZE - 28)
    for seq in range(count):
        t.send_ip(icmp_echo(t.local_address, t.peer_address, ident, seq, payload))
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        try:
            pkt = await t.recv_ip(deadline - time.monotonic())
        except TimeoutError:
            break
        for seq in range(count):
            if seq not in seen and is_echo_reply(pkt, ident, seq):
                seen.add(seq)
                break
    return len(seen)


def _stdin_lines(loop: asyncio.AbstractEventLoop, q: asyncio.Queue[str]) -> None:
    for line in sys.stdin:
        loop.call_soon_threadsafe(q.put_nowait, line.strip())
    loop.call_soon_threadsafe(q.put_nowait, "close")


async def run(a: argparse.Namespace) -> int:
    opts = ClientOptions(
        host=a.host,
        user=a.user,
        password=a.password,
        ca_file=a.ca_file,
        timeout=a.timeout,
        server_name=a.server_name,
    )
    try:
        t = await Tunnel.open(opts)
    except Exception as exc:
        _emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 0
    tr = t.proto.transport
    assert tr is not None
    sslobj = tr.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else b""
    _emit(
        {
            "event": "open",
            "local": str(t.local_address),
            "port": tr.get_extra_info("sockname")[1],
            "fingerprint": hashlib.sha256(der).digest().hex(":").upper(),
            "dns": [str(d) for d in t.dns],
        }
    )
    if a.once:
        await t.close()
        return 0
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()
    threading.Thread(target=_stdin_lines, args=(loop, commands), daemon=True).start()
    closed = asyncio.ensure_future(t.wait_closed())
    ident = 1000
    while True:
        get = asyncio.ensure_future(commands.get())
        await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            get.cancel()
            _emit({"event": "closed", "reason": closed.result()})
            return 0
        cmd = get.result().split()
        if cmd and cmd[0] == "ping":
            ident += 1
            replies = await _ping(t, int(cmd[1]), ident)
            _emit({"event": "ping", "sent": int(cmd[1]), "replies": replies})
        elif cmd == ["close"]:
            await t.close()
            _emit({"event": "closed", "reason": "client closed"})
            return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="alice-secret")
    p.add_argument("--ca-file")
    p.add_argument("--server-name", help="TLS server name (default: --host)")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--once", action="store_true")
    return asyncio.run(run(p.parse_args()))


# ---------------------------------------------------------------------------------------
# the driver, used by the tests


class HeldClient:
    """One ``ctl_client`` process in the client namespace, driven line by line."""

    def __init__(
        self,
        net: Any,
        host: str,
        ca_file: str,
        user: str,
        password: str,
        server_name: str | None = None,
    ) -> None:
        extra = ["--server-name", server_name] if server_name else []
        self.proc: subprocess.Popen[str] = net.popen(
            net.cli,
            sys.executable,
            "-m",
            "tests.integration.ctl_client",
            "--host",
            host,
            "--ca-file",
            ca_file,
            "--user",
            user,
            "--password",
            password,
            *extra,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.user = user
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        self.info = self.read()
        if self.info.get("event") != "open":
            self.stop()
            raise AssertionError(f"{user}: session did not open: {self.info}")

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float = 30.0) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.user}: no output within {timeout} s") from None
        if line is None:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"{self.user}: client exited: {err}")
        return json.loads(line)  # type: ignore[no-any-return]

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def ping(self, count: int) -> int:
        self.send(f"ping {count}")
        res = self.read()
        assert res["event"] == "ping", res
        return int(res["replies"])

    def wait_closed(self, timeout: float = 15.0) -> str:
        res = self.read(timeout)
        assert res["event"] == "closed", res
        return str(res["reason"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send("close")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def connect_once(net: Any, host: str, ca_file: str, user: str, password: str) -> dict[str, Any]:
    """Open a session, report what the client saw, close it (or the error)."""
    r = net.run(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.ctl_client",
        "--once",
        "--host",
        host,
        "--ca-file",
        ca_file,
        "--user",
        user,
        "--password",
        password,
        "--timeout",
        "10",
        check=False,
        timeout=60,
    )
    lines = r.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"ctl_client --once printed nothing: {r.stderr}")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


if __name__ == "__main__":
    sys.exit(main())
