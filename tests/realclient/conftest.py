"""pytest fixtures for the real-client tests (sstpc + pppd in a QEMU guest).

`guest`: session-scoped; builds the image if needed (~1 min, cached in SSTPD_GUEST_DIR,
default /var/tmp/sstpd-guest), boots the VM (~8-15 s) and stops it at the end of the session.
Tests using it should be marked `@pytest.mark.realclient`. Without root or QEMU they are
skipped. SSTPD_GUEST_KEEP=1 leaves a VM that the fixture booted running after the session
(`python3 -m tests.realclient.guest stop` ends it); an already running one (booted with
`python3 -m tests.realclient.guest boot`) is reused and left running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from . import guest as guest_mod


@pytest.fixture(scope="session")
def guest() -> Iterator[guest_mod.Guest]:
    if os.geteuid() != 0:
        pytest.skip("the real-client guest needs root (debootstrap, netns, tap)")
    missing = [
        b
        for b in ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "ssh")
        if shutil.which(b) is None
    ]
    if missing:
        pytest.skip(f"missing on the host: {', '.join(missing)}")
    guest_mod.build()
    g = guest_mod.Guest()
    if g.running():  # booted beforehand from the command line: reuse it
        guest_mod.net_up()
        yield g
        return
    try:
        g.boot()  # stops qemu itself when the boot fails
        yield g
    finally:
        if os.environ.get("SSTPD_GUEST_KEEP") != "1":
            g.stop()
            guest_mod.net_down()  # and the netns, veth and route it set up
