"""A real FreeRADIUS 3.2 (Debian ``freeradius``) with its own generated configuration.

``FreeRadius(workdir, address).start(net, ns)`` writes a self-contained raddb (no file
from /etc/freeradius is used): one virtual server with PAP and MS-CHAPv2 (``use_mppe``),
a ``users`` file with Cleartext-Password entries and reply attributes, accounting into a
``detail`` file, and the test network as client. FreeRADIUS 3.2.1 does not sign its
PAP/MS-CHAP answers with Message-Authenticator on its own; the post-auth section adds the
attribute, which makes it compute the HMAC (what a BlastRADIUS-patched server does).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET = "radius-test-secret"


@dataclass
class RadUser:
    name: str
    password: str
    reply: dict[str, str] = field(default_factory=dict)


DEFAULT_USERS = [
    RadUser(
        "ruser",
        "ruser-pass",
        {"Reply-Message": '"hello from radius"', "Class": "0x" + b"cls-ruser".hex()},
    ),
    RadUser("fixed", "fixed-pass", {"Framed-IP-Address": "10.77.0.77"}),
    RadUser("short", "short-pass", {"Session-Timeout": "4"}),
    RadUser("idle", "idle-pass", {"Idle-Timeout": "3"}),
    RadUser("nokeys", "nokeys-pass"),
]


@dataclass
class FreeRadius:
    workdir: Path
    address: str
    clients: str = "10.231.100.0/24"
    secret: str = SECRET
    users: list[RadUser] = field(default_factory=lambda: list(DEFAULT_USERS))
    auth_port: int = 1812
    acct_port: int = 1813
    proc: subprocess.Popen[str] | None = None

    @property
    def detail(self) -> Path:
        return self.workdir / "detail"

    @property
    def log(self) -> Path:
        return self.workdir / "radius.log"

    def write(self) -> None:
        d = self.workdir
        for sub in ("run", "log", "mods-config"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        users = []
        for u in self.users:
            reply = ",\n\t".join(f"{k} = {v}" for k, v in u.reply.items())
            users.append(f'{u.name}\tCleartext-Password := "{u.password}"\n\t{reply}\n')
        (d / "users").write_text("\n".join(users))
        (d / "radiusd.conf").write_text(f"""
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}/log
raddbdir = {d}
radacctdir = {d}
name = freeradius
confdir = {d}
modconfdir = {d}/mods-config
run_dir = {d}/run
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/run/radiusd.pid
max_request_time = 30
cleanup_delay = 2
max_requests = 1024
hostname_lookups = no
log {{
    destination = files
    file = {self.log}
    auth = yes
    auth_badpass = no
    auth_goodpass = no
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 2
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 3
    max_requests_per_server = 0
}}
client sstpd {{
    ipaddr = {self.clients}
    secret = {self.secret}
    require_message_authenticator = yes
}}
modules {{
    pap {{
        normalise = yes
    }}
    mschap {{
        use_mppe = yes
        require_encryption = no
        require_strong = no
    }}
    files {{
        filename = {d}/users
    }}
    detail {{
        filename = {self.detail}
        escape_filenames = no
        permissions = 0600
        header = "%t"
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = {self.address}
        port = {self.auth_port}
    }}
    listen {{
        type = acct
        ipaddr = {self.address}
        port = {self.acct_port}
    }}
    authorize {{
        files
        mschap
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
        Auth-Type MS-CHAP {{
            mschap
        }}
    }}
    preacct {{
    }}
    accounting {{
        detail
    }}
    post-auth {{
        if (&User-Name == "nokeys") {{
            update reply {{
                MS-MPPE-Send-Key !* ANY
                MS-MPPE-Recv-Key !* ANY
            }}
        }}
        update reply {{
            Message-Authenticator := 0x00
        }}
        Post-Auth-Type REJECT {{
            update reply {{
                Message-Authenticator := 0x00
            }}
        }}
    }}
}}
""")

    def start(self, net: Any, ns: str) -> None:
        self.write()
        self.proc = net.popen(
            ns,
            "freeradius",
            "-f",
            "-l",
            "stdout",
            "-xx",
            "-d",
            str(self.workdir),
            stdout=open(self.workdir / "stdout.log", "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        out = self.workdir / "stdout.log"
        while time.monotonic() < deadline:
            text = out.read_text() if out.exists() else ""
            if "Ready to process requests" in text:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"freeradius exited:\n{text[-4000:]}")
            time.sleep(0.1)
        raise AssertionError("freeradius not ready:\n" + out.read_text()[-4000:])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def output(self) -> str:
        return (self.workdir / "stdout.log").read_text()

    def records(self) -> list[dict[str, str]]:
        """The accounting detail file as one dict per record (values unquoted)."""
        if not self.detail.exists():
            return []
        out: list[dict[str, str]] = []
        for block in self.detail.read_text().split("\n\n"):
            rec: dict[str, str] = {}
            for line in block.splitlines():
                m = re.match(r"\s+([\w-]+) = (.*)$", line)
                if m:
                    rec[m.group(1)] = m.group(2).strip('"')
            if rec:
                out.append(rec)
        return out

    def records_of(self, user: str) -> list[dict[str, str]]:
        """The accounting records of ``user``, in the detail file's order."""
        return [r for r in self.records() if r.get("User-Name") == user]


@contextlib.contextmanager
def serving(fr: FreeRadius, net: Any, ns: str) -> Iterator[FreeRadius]:
    """``fr`` started in namespace ``ns`` of ``net`` for the ``with`` block, stopped after."""
    try:
        fr.start(net, ns)
        yield fr
    finally:
        fr.stop()
