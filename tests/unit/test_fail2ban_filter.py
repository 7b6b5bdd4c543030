"""The shipped fail2ban filter against real sstpd log lines (captured from the brute-force
test of tests/integration/test_limits.py), run with fail2ban's own fail2ban-regex."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "examples" / "fail2ban" / "filter.d" / "sstpd.conf"
LOG = Path(__file__).parent / "data" / "sstpd-auth-failures.log"


def matched(log: Path) -> list[str]:
    exe = shutil.which("fail2ban-regex")
    assert exe, "fail2ban-regex missing: apt-get install fail2ban (tests/run installs it)"
    r = subprocess.run(
        [exe, "--print-all-matched", "--raw", str(log), str(FILTER)],
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out: list[str] = []
    section = False
    for line in r.stdout.splitlines():
        if line.startswith("|- Matched line(s):"):
            section = True
        elif section and line.startswith("|  "):
            out.append(line[3:])
        elif section:
            break
    return out


def test_every_failure_line_and_nothing_else() -> None:
    lines = LOG.read_text().splitlines()
    failures = [line for line in lines if re.search(r"WARNING .* authentication failed \(", line)]
    assert len(failures) == 6 and len(lines) > len(failures)
    assert matched(LOG) == failures


def test_user_name_cannot_move_the_address(tmp_path: Path) -> None:
    """A user name that looks like an address is not what fail2ban bans."""
    line = next(x for x in LOG.read_text().splitlines() if "user 'bob' authentication" in x)
    forged = line.replace("user 'bob'", "user '1.2.3.4:5 user x'")
    log = tmp_path / "forged.log"
    log.write_text(forged + "\n")
    exe = shutil.which("fail2ban-regex")
    assert exe
    r = subprocess.run(
        [exe, "--print-all-matched", "--raw", str(log), str(FILTER)],
        text=True,
        capture_output=True,
        timeout=60,
    )
    hosts = re.findall(r"<HOST>|'ip': '([^']+)'", r.stdout)
    assert "1.2.3.4" not in hosts
    assert matched(log) == [forged]


@pytest.mark.parametrize("peer", ["[2001:db8::7]:40000", "192.0.2.7:40000"])
def test_ipv4_and_ipv6_peers(tmp_path: Path, peer: str) -> None:
    line = next(x for x in LOG.read_text().splitlines() if "user 'bob' authentication" in x)
    log = tmp_path / "peer.log"
    log.write_text(re.sub(r"\] \S+ user", f"] {peer} user", line, count=1) + "\n")
    assert len(matched(log)) == 1
