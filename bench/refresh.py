"""What the supervisor's periodic refresh costs at many sessions: prints, asserts nothing.

    python3 bench/refresh.py [--sessions 10000] [--workers 2] [--repeats 5]

With ``server.workers`` and RADIUS accounting configured, the supervisor asks each
worker for its sessions' counters every ``sstpd.aio.refresh.REFRESH_INTERVAL`` seconds
(10 s), so that a worker that dies leaves Stops with recent traffic. This times one such
request to one worker holding ``--sessions`` sessions, through the code the daemon runs,
in two shapes:

* ``traffic`` (what the refresh asks): five integers per session. The worker builds a
  ``SessionTraffic`` per session and encodes ``traffic_to_json`` as the control link's
  JSON line; the supervisor decodes it, checks it (``traffic_from_json``) and calls
  ``Registry.traffic`` per row.
* ``sessions`` (what ``sstpctl sessions`` asks, and what the refresh asked before): one
  ``SessionRecord`` of 24 fields per session (what ``Connection.describe`` builds),
  ``sessions_to_json``; the supervisor reads every field (``sessions_from_json``).

Each side blocks its own event loop for the time printed: the worker's data path, the
supervisor's logins. No daemon, no root; minimum of ``--repeats`` runs, process CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sstpd.aio.refresh import REFRESH_INTERVAL
from sstpd.aio.supervisor_worker import decode_answer
from sstpd.aio.workers_link import worker_answer
from sstpd.control import encode
from sstpd.proto.registry import Held, Registry
from sstpd.records import SessionRecord, sessions_from_json, sessions_to_json
from sstpd.records_link import SessionTraffic, traffic_from_json, traffic_to_json


def row(i: int) -> dict[str, object]:
    """The fields ``Connection.describe`` fills, with plausible values."""
    return dict(
        id=i,
        user=f"user{i:05d}",
        peer=f"198.51.{i >> 8 & 255}.{i & 255}:{40000 + i % 20000}",
        peer_host=f"198.51.{i >> 8 & 255}.{i & 255}",
        peer_port=40000 + i % 20000,
        address=f"10.{100 + (i >> 16)}.{i >> 8 & 255}.{i & 255}",
        ipv6_prefix=f"2001:db8:{i:x}::/64",
        connected_since=1764662400.123 + i,
        duration=3600.5 + i,
        rx_bytes=123456789 + i,
        rx_packets=98765 + i,
        tx_bytes=987654321 + i,
        tx_packets=87654 + i,
        rx6_bytes=1234 + i,
        rx6_packets=12,
        tx6_bytes=4321 + i,
        tx6_packets=21,
        dropped=i % 3,
        auth_method="eap-mschapv2",
        tls_version="TLSv1.3",
        tls_cipher="TLS_AES_256_GCM_SHA384",
        binding_hash="SHA256",
        cert_hash="ab" * 32,
        worker=1,
    )


def best(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()  # type: ignore[operator]
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=10000, help="sessions of one worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()

    fields = [row(i) for i in range(a.sessions)]
    registry = Registry()
    for i in range(a.sessions):
        registry.sessions[i] = Held(i, 1, 1, f"user{i:05d}", "198.51.0.1", i)

    def sessions_worker() -> bytes:
        rows = [SessionRecord(**f) for f in fields]  # type: ignore[arg-type]
        return encode({"ok": True, **sessions_to_json(rows)})

    def traffic_worker() -> bytes:
        keys = ("id", "rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
        rows = [SessionTraffic(*(f[k] for k in keys)) for f in fields]  # type: ignore[arg-type]
        return encode({"ok": True, **traffic_to_json(rows)})

    lines = {"traffic": traffic_worker(), "sessions": sessions_worker()}

    def sessions_supervisor() -> None:
        rows = worker_answer(sessions_from_json, 1, decode_answer(lines["sessions"]))
        assert rows is not None and len(rows) == a.sessions
        for r in rows:
            registry.traffic(r.id, r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets)

    def traffic_supervisor() -> None:
        rows = worker_answer(traffic_from_json, 1, decode_answer(lines["traffic"]))
        assert rows is not None and len(rows) == a.sessions
        for r in rows:
            registry.traffic(r.id, r.rx_bytes, r.tx_bytes, r.rx_packets, r.tx_packets)

    n = a.sessions
    print(
        f"{n} sessions per worker, {a.workers} workers, one refresh every "
        f"{REFRESH_INTERVAL:.0f} s; minimum of {a.repeats}; Python {sys.version.split()[0]}"
    )
    print(
        "| answer | bytes per session | worker ms | supervisor ms per worker |"
        f" share of one core, supervisor, {a.workers} workers every {REFRESH_INTERVAL:.0f} s |"
    )
    print("|---|---|---|---|---|")
    for name, worker, supervisor in (
        ("traffic (the refresh)", traffic_worker, traffic_supervisor),
        ("sessions (sstpctl)", sessions_worker, sessions_supervisor),
    ):
        registry.sessions[n - 1].rx_bytes = 0
        supervisor()
        assert registry.sessions[n - 1].rx_bytes == 123456789 + n - 1
        w = best(worker, a.repeats)
        s = best(supervisor, a.repeats)
        size = len(lines[name.split()[0]]) / n
        print(
            f"| {name} | {size:.0f} | {w * 1e3:.1f} | {s * 1e3:.1f} | "
            f"{s * a.workers / REFRESH_INTERVAL:.2%} |"
        )


if __name__ == "__main__":
    main()
