"""What the userspace GRO costs per packet: prints, asserts nothing.

    python3 bench/coalesce.py [--packets 33] [--payload 1348] [--rounds 2000]

``sstpd.proto.gro.coalesce`` over one read's worth of one TCP flow's full-sized IPv4
segments (timestamps option on, as Linux sends them), laid out in one buffer with the
8-byte SSTP + PPP prefix between them as the daemon's receive buffer holds them: with the
fast path (the default) and with the full header test only. 33 segments is what one read
brings with read moderation (docs/PERFORMANCE-NOTES.md). Minimum of 7 repeats; pin it to
a core (``taskset -c 1``) on a shared machine.
"""

from __future__ import annotations

import argparse
import struct
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sstpd.proto import gro


def segment(seq: int, ip_id: int, payload: int) -> bytes:
    opts = b"\x01\x01\x08\x0a" + struct.pack("!II", 1000, 2000)
    tcp = struct.pack("!HHIIBBHHH", 5201, 40000, seq, 777, 8 << 4, 0x10, 500, 0, 0) + opts
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + payload, ip_id, 0x4000, 64, 6, 0,
        bytes([10, 78, 0, 2]), bytes([10, 9, 0, 1]),
    )  # fmt: skip
    return ip + tcp + bytes(payload)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=33)
    ap.add_argument("--payload", type=int, default=1348)
    ap.add_argument("--rounds", type=int, default=2000)
    a = ap.parse_args()
    buf = bytearray()
    spans = []
    for i in range(a.packets):
        buf += bytes(8)
        start = len(buf)
        buf += segment(1000 + i * a.payload, 5 + i, a.payload)
        spans.append((start, len(buf)))
    print(f"{a.packets} segments of {a.payload} bytes, one flow")
    print("| coalescer | ns per packet | writes |")
    print("|---|---|---|")
    for fast in (True, False):
        writes = len(gro.coalesce(buf, spans, fast=fast))
        once = lambda f=fast: gro.coalesce(buf, spans, fast=f)  # noqa: E731
        best = min(timeit.repeat(once, number=a.rounds, repeat=7))
        name = "fast path (default)" if fast else "full header test"
        print(f"| {name} | {best / a.rounds / a.packets * 1e9:.0f} | {writes} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
