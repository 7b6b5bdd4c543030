"""``sstpd serve`` under tracemalloc, for bench/memory.py --trace (never used in production).

Started in place of ``python3 -m sstpd``; ``SSTPD_BENCH_SNAPSHOT=PREFIX`` names the
snapshot files. A helper thread watches for ``PREFIX.N.req`` and answers with the
snapshot ``PREFIX.N`` (then ``PREFIX.N.done``); ``PREFIX.trim.req`` makes it call glibc's
``malloc_trim(0)`` (answer ``PREFIX.trim.done``), to see whether freed memory can be
given back. So the daemon's event loop and signal
handlers stay exactly as in production.

``SSTPD_BENCH_BUFFER=BYTES`` (an experiment, bench/memory.py --buffer) starts the daemon
with another size of its receive buffer than sstpd's 64 KiB (one per thread, shared by
all connections since issue 15; it was one per connection when the experiment was made);
without ``SSTPD_BENCH_SNAPSHOT`` nothing is traced.
``SSTPD_BENCH_PURE_DES=1`` (bench/handshakes.py --compare-des) makes MS-CHAPv2 use the
pure-Python DES fallback instead of cryptography's, to measure what that costs.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

FRAMES = int(os.environ.get("SSTPD_BENCH_FRAMES", "1"))


def _watch(prefix: str) -> None:
    n = 0
    while True:
        trim = Path(f"{prefix}.trim.req")
        if trim.exists():
            trim.unlink()
            gc.collect()
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand free heap pages back to the OS
            Path(f"{prefix}.trim.done").touch()
        req = Path(f"{prefix}.{n}.req")
        if req.exists():
            gc.collect()
            tracemalloc.take_snapshot().dump(f"{prefix}.{n}")
            Path(f"{prefix}.{n}.done").touch()
            n += 1
        time.sleep(0.2)


def main() -> int:
    if os.environ.get("SSTPD_BENCH_PURE_DES"):
        from sstpd.proto import mschap

        mschap._des_library = None  # the pure-Python fallback, as without cryptography's DES
    if os.environ.get("SSTPD_BENCH_BUFFER"):
        import sstpd.aio.buffers as buffers
        import sstpd.aio.protocol as protocol

        # shared_buffer() reads buffers'; get_buffer()'s own buffer (a nested read), protocol's
        buffers.BUFFER_SIZE = protocol.BUFFER_SIZE = int(os.environ["SSTPD_BENCH_BUFFER"])
    if os.environ.get("SSTPD_BENCH_SNAPSHOT"):
        tracemalloc.start(FRAMES)
        prefix = os.environ["SSTPD_BENCH_SNAPSHOT"]
        threading.Thread(target=_watch, args=(prefix,), daemon=True).start()
    from sstpd.cli import main as sstpd_main

    return sstpd_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
