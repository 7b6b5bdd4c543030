"""Seed FAQ §7: two nodes with the same certificate behind HAProxy in TCP pass-through
mode, health-checked on each node's status app (/healthz under gunicorn).

    client 10.231.80.2 -- 10.231.80.1:443 [lb: haproxy] 10.231.81.1 --+-- node1 10.231.81.11
                                                                      +-- node2 10.231.81.12

Each node hands out addresses from its own slice of 10.77.0.0/24, and the balancer's
namespace routes each slice to its node, so traffic for a client always finds the node
that holds its session. The HAProxy configuration is the sstpd_haproxy role's template.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from tests.integration.netns import ROOT, Daemon, RootNamespace, sh
from tests.scenarios.topology import Topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

LB, CLIENT = "10.231.80.1", "10.231.80.2"
NODES = {
    "node1": ("10.231.81.11", "10.77.0.1", "10.77.0.0/25"),
    "node2": ("10.231.81.12", "10.77.0.129", "10.77.0.128/25"),
}
TEMPLATE = ROOT / "roles" / "sstpd_haproxy" / "templates" / "etc" / "haproxy" / "haproxy.cfg.j2"


def render_haproxy(work: Path) -> Path:
    """The role's template, rendered as Ansible would with the role's variables."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), undefined=jinja2.StrictUndefined
    )
    env.filters["bool"] = lambda v: (
        v if isinstance(v, bool) else str(v).lower() in ("true", "yes", "1")
    )
    cfg = env.get_template(TEMPLATE.name).render(
        ansible_managed="test",
        sstpd_haproxy__mode="passthrough",
        sstpd_haproxy__frontend_address=LB,
        sstpd_haproxy__frontend_port=443,
        sstpd_haproxy__balance="roundrobin",
        sstpd_haproxy__check_interval="300ms",
        sstpd_haproxy__send_proxy=False,
        sstpd_haproxy__maxconn=1000,
        sstpd_haproxy__stats_socket=str(work / "haproxy.sock"),
        sstpd_haproxy__certificate_pem="unused",
        sstpd_haproxy__servers=[
            {"name": n, "address": a[0], "port": 443, "check_port": 8080} for n, a in NODES.items()
        ],
    )
    path = work / "haproxy.cfg"
    path.write_text(cfg)
    sh("haproxy", "-c", "-q", "-f", str(path))
    return path


class Cluster:
    def __init__(self, topo: Topology, work: Path) -> None:
        self.topo, self.work = topo, work
        self.daemons: dict[str, Daemon] = {}
        self.procs: list[subprocess.Popen[str]] = []

    def start_node(self, name: str, cert_from: Daemon | None) -> Daemon:
        ip, tunnel, pool = NODES[name]
        d = Daemon(
            RootNamespace(self.topo.ns(name)),
            self.work / name,
            listen=ip,
            tunnel_ip=tunnel,
            pool=pool,
            cert_names=[LB],
        )
        d.workdir.mkdir()
        d.prepare()
        if cert_from is not None:  # every node presents the same certificate
            for f in ("server.crt", "server.key"):
                shutil.copy(cert_from.workdir / "tls" / f, d.workdir / "tls" / f)
        d.start()
        env = dict(os.environ, SSTPD_CONTROL_SOCKET=str(d.workdir / "control.sock"))
        self.procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.topo.ns(name),
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"{ip}:8080",
                    "--workers",
                    "1",
                    "sstpd.status:create_app()",
                ],
                cwd=str(ROOT),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self.daemons[name] = d
        return d

    def haproxy_status(self) -> dict[str, str]:
        r = sh(
            "socat",
            "-",
            f"UNIX-CONNECT:{self.work / 'haproxy.sock'}",
            input="show stat\n",
            check=False,
        )
        out = r.stdout if r.returncode == 0 else ""  # not up yet
        rows = [line.split(",") for line in out.splitlines() if line.startswith("sstpd_nodes,")]
        return {r[1]: r[17] for r in rows if r[1] in NODES}

    def wait_status(self, want: dict[str, str], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.haproxy_status() == want:
                return
            time.sleep(0.2)
        raise AssertionError(f"haproxy sees {self.haproxy_status()}, want {want}")

    def sessions(self, name: str) -> int:
        d = self.daemons[name]
        out = sh(
            sys.executable,
            "-m",
            "sstpd",
            "ctl",
            "--socket",
            str(d.workdir / "control.sock"),
            "--json",
            "sessions",
            cwd=str(ROOT),
        ).stdout
        data = json.loads(out)
        return len(data["sessions"] if isinstance(data, dict) else data)

    def ctl(self, name: str, *args: str) -> None:
        d = self.daemons[name]
        sh(
            sys.executable,
            "-m",
            "sstpd",
            "ctl",
            "--socket",
            str(d.workdir / "control.sock"),
            *args,
            cwd=str(ROOT),
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    topo = Topology("sstpdl", ["cli", "lb", "node1", "node2"])
    c = Cluster(topo, tmp_path_factory.mktemp("lb"))
    try:
        topo.up()
        topo.link("cli", "eth0", f"{CLIENT}/24", "lb", "pub0", f"{LB}/24")
        sh("ip", "link", "add", "br0", "netns", topo.ns("lb"), "type", "bridge")
        sh("ip", "-n", topo.ns("lb"), "addr", "add", "10.231.81.1/24", "dev", "br0")
        sh("ip", "-n", topo.ns("lb"), "link", "set", "br0", "up")
        for name, (ip, _, pool) in NODES.items():
            sh(
                "ip",
                "link",
                "add",
                f"to-{name}",
                "netns",
                topo.ns("lb"),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                topo.ns(name),
            )
            sh("ip", "-n", topo.ns("lb"), "link", "set", f"to-{name}", "master", "br0", "up")
            sh("ip", "-n", topo.ns(name), "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", topo.ns(name), "link", "set", "eth0", "up")
            topo.route("lb", pool, ip)  # replies for a client go to the node that holds it
        first = c.start_node("node1", None)
        c.start_node("node2", first)
        c.procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    topo.ns("lb"),
                    "haproxy",
                    "-db",
                    "-f",
                    str(render_haproxy(c.work)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        c.wait_status({"node1": "UP", "node2": "UP"})
        yield c
    finally:  # also when the set-up fails half way: no daemon or TUN outlives the module
        for p in c.procs:
            p.terminate()
            p.wait(10)
        for d in c.daemons.values():
            d.stop()
        topo.down()


def test_balanced_drain_and_failover(cluster: Cluster) -> None:
    d1 = cluster.daemons["node1"]
    pool = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            cluster.topo.ns("cli"),
            sys.executable,
            "-m",
            "tests.integration.client_tool",
            "pool",
            "--host",
            LB,
            "--ca-file",
            str(d1.cert),
        ],
        cwd=str(ROOT),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert pool.stdin is not None and pool.stdout is not None

    def say(cmd: str) -> dict[str, object]:
        assert pool.stdin is not None and pool.stdout is not None
        pool.stdin.write(cmd + "\n")
        pool.stdin.flush()
        return json.loads(pool.stdout.readline())  # type: ignore[no-any-return]

    try:
        # 20 sessions spread over both nodes, each getting an address of its node's slice
        opened = say("open 20")["opened"]
        assert len(opened) == 20  # type: ignore[arg-type]
        n1, n2 = cluster.sessions("node1"), cluster.sessions("node2")
        assert n1 + n2 == 20 and n1 >= 5 and n2 >= 5, (n1, n2)
        assert say("ping") == {"replies": 20, "tunnels": 20}

        # drain node1: HAProxy's health check sees 503, new sessions all go to node2,
        # node1's sessions keep working
        cluster.ctl("node1", "drain")
        cluster.wait_status({"node1": "DOWN", "node2": "UP"})
        say("open 4")
        assert (cluster.sessions("node1"), cluster.sessions("node2")) == (n1, n2 + 4)
        assert say("ping") == {"replies": 24, "tunnels": 24}

        # undrain, then stop node2: HAProxy marks it down
        cluster.ctl("node1", "undrain")
        cluster.wait_status({"node1": "UP", "node2": "UP"})
        cluster.daemons["node2"].stop()
        cluster.wait_status({"node1": "UP", "node2": "DOWN"})
        say("open 2")
        assert cluster.sessions("node1") == n1 + 2
    finally:
        pool.stdin.close()
        pool.wait(30)
