"""Drive Debian's SSTP client (sstpc 1.0.18 + pppd 2.4.9) in the test guest.

    info = connect(guest, SERVER_IP, 443, "alice", "secret")   # raises SstpcError on failure
    info == {"ifname": "ppp0", "local": "10.x.y.z", "peer": "10.x.y.1", "dns": [...],
             "attempts": 1, "seconds": 4.2, "sstpc_log": "...", "pppd_log": "..."}
    iperf(guest, info["peer"], 5)      # needs an iperf3 server there, e.g. iperf_server(...)
    disconnect(guest)

The whole client-side sequence runs in the guest in one ssh call (GUEST_CONNECT below), so
the timing is the client's, not that of ssh round trips.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from .guest import Guest

WORK = "/tmp/sstpc"  # in the guest: logs, CA file
RACE_MESSAGE = "The event loop terminated unsuccessfully"


class SstpcError(RuntimeError):
    """connect() failed. .sstpc_log (all attempts, NULs stripped) and .pppd_log hold the logs."""

    def __init__(self, message: str, sstpc_log: str = "", pppd_log: str = "") -> None:
        self.sstpc_log, self.pppd_log = sstpc_log, pppd_log
        super().__init__(
            f"{message}\n----- sstpc log\n{sstpc_log or '(empty)'}\n----- pppd log\n"
            f"{pppd_log or '(empty: pppd did not start, SSTP failed before PPP)'}\n-----"
        )


# Runs in the guest (python3 - < this, one JSON argument) and prints one JSON line.
#
# Why the delay and the retry: sstpc 1.0.18 has a race. When its TLS handshake and the write
# of the SSTP_DUPLEX_POST request complete without ever blocking (the server's TLS flight is
# already there when sstpc first reads, i.e. a slow TCG client and a fast server),
# sstp_http_send_hello() returns synchronously and the completion callback that would arm
# the read of the "HTTP/1.1 200" reply never runs; libevent runs out of events and sstpc exits
# right after "Connected to ..." with "The event loop terminated unsuccessfully" - about half
# of all attempts. A 20 ms netem delay on the guest's interface towards the server while
# connecting makes the first read block and avoids it (8/8 and 12/12 against ~4/8 without);
# the qdisc goes away once ppp0 is up. If the message shows up anyway, sstpc is restarted
# (3 attempts in all). This is a client bug: a server that triggers it is not at fault.
GUEST_CONNECT = r"""
import json, re, subprocess, sys, time
@@PPP_READY@@
a = json.loads(sys.argv[1])
work = a["work"]
def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True)
def read(p):
    try:
        with open(p, "rb") as f:
            # sstpc ends its log lines with NUL bytes
            return f.read().replace(b"\0", b"").decode(errors="replace")
    except OSError:
        return ""
def ppp_addr():
    return ppp_ready(sh("ip -j -4 addr show dev ppp0").stdout)
def stop_client():
    sh("pkill -x sstpc")
    for _ in range(50):
        if sh("pgrep -x pppd").returncode != 0:
            return
        time.sleep(0.1)
    sh("pkill -x pppd")
    time.sleep(0.3)
    sh("pkill -9 -x pppd")
stop_client()
sh(f"rm -rf {work}/sstpc.log.* {work}/pppd.log /etc/ppp/resolv.conf; mkdir -p {work}")
m = re.search(r" dev (\S+)", sh(f"ip route get {a['host']}").stdout)
if not m:
    print(json.dumps({"ok": False, "error": f"no route to {a['host']} in the guest"})); sys.exit()
dev = m.group(1)
netem = f"tc qdisc replace dev {dev} root netem delay {a['delay_ms']}ms"
qdisc = a["delay_ms"] > 0 and sh(netem).returncode == 0
t_start = time.monotonic()
res = {"ok": False, "error": "", "attempts": 0}
try:
    for attempt in range(1, a["attempts"] + 1):
        res["attempts"] = attempt
        log = f"{work}/sstpc.log.{attempt}"
        with open(log, "wb") as out:
            p = subprocess.Popen(a["argv"], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + a["timeout"]
        addr = None
        while time.monotonic() < deadline:
            addr = ppp_addr()
            if addr or p.poll() is not None:
                break
            time.sleep(0.1)
        if addr:
            break
        if p.poll() is None:
            state = sh("ip -4 addr show dev ppp0").stdout.strip() or "no ppp0"
            res["error"] = (f"ppp0 not up with a local and a peer address after "
                            f"{a['timeout']}s; last: {state}")
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
            stop_client()
            break
        if a["race_message"] in read(log) and attempt < a["attempts"]:
            time.sleep(1)
            continue
        res["error"] = f"sstpc exited with status {p.returncode} without bringing up ppp0"
        stop_client()
        break
    if addr:
        res.update(ok=True, ifname="ppp0", local=addr[0], peer=addr[1], pid=p.pid)
        # usepeerdns: pppd writes /etc/ppp/resolv.conf before it configures ppp0; its log has
        # "primary   DNS address A" / "secondary DNS address B" too
        dns = []
        for _ in range(10):
            dns = re.findall(r"^nameserver\s+(\S+)", read("/etc/ppp/resolv.conf"), re.M)
            dns = dns or re.findall(r"(?:primary|secondary)\s+DNS address (\S+)",
                                    read(f"{work}/pppd.log"))
            if dns:
                break
            time.sleep(0.1)
        res["dns"] = dns
        for net in a["routes"]:
            r = sh(f"ip route replace {net} dev ppp0")
            if r.returncode:
                res.update(ok=False, error=f"ip route replace {net} dev ppp0: {r.stderr.strip()}")
finally:
    res["seconds"] = round(time.monotonic() - t_start, 2)
    if qdisc:
        sh(f"tc qdisc del dev {dev} root")
res["sstpc_log"] = "".join(f"--- attempt {i}\n" + read(f"{work}/sstpc.log.{i}")
                           for i in range(1, res["attempts"] + 1))
res["pppd_log"] = read(f"{work}/pppd.log")
print(json.dumps(res))
"""


def ppp_ready(ip_json: str) -> tuple[str, str] | None:
    """(local, peer) from ``ip -j -4 addr show dev ppp0`` once IPCP has configured ppp0,
    else None. pppd's ipcp_up() sets the local address (SIOCSIFADDR), then the peer's
    (SIOCSIFDSTADDR), then brings the interface up: in between, ip shows the local address
    alone (no "address" key) or a device still down, and reading the peer then gave ''.
    Ready is all three: UP, a local and a peer address. (Runs in the guest too: its source
    is part of GUEST_CONNECT.)"""
    try:
        link = json.loads(ip_json)[0]
        if "UP" not in link.get("flags", []):
            return None
        for ai in link["addr_info"]:
            if ai.get("local") and ai.get("address"):
                return str(ai["local"]), str(ai["address"])
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        pass
    return None


GUEST_CONNECT = GUEST_CONNECT.replace("@@PPP_READY@@", inspect.getsource(ppp_ready))


def client_logs(guest: Guest) -> str:
    """The guest's sstpc logs (every attempt) and pppd log as they are now, for an
    assertion's message; the client keeps running."""
    logs = _split_logs(guest.run(_SHOW_LOGS, timeout=60).stdout)
    return f"----- guest sstpc log\n{logs['sstpc_log']}----- guest pppd log\n{logs['pppd_log']}"


def explain(guest: Guest, server_log: Path | None = None, tail: int = 4000) -> str:
    """What an assertion about a real-client session shows when it fails: the guest's
    sstpc and pppd logs and the last ``tail`` characters of the server's log."""
    text = client_logs(guest)
    if server_log is not None:
        try:
            log = server_log.read_text(errors="replace")
        except OSError as e:
            log = f"({e})"
        text += f"\n----- server log ({server_log}, last {tail} chars)\n{log[-tail:]}"
    return text


class _Server(Protocol):
    log: Path

    def wait_log(self, needle: str, timeout: float = ...) -> str: ...


def wait_server_log(guest: Guest, server: _Server, needle: str, timeout: float = 10) -> str:
    """``server.wait_log(needle)``; when it fails, the guest's logs are in the message too."""
    try:
        return server.wait_log(needle, timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{client_logs(guest)}") from None


def wait_for(guest: Guest, cmd: str, ready: Callable[[str], bool], timeout: float = 15) -> str:
    """Run ``cmd`` in the guest until ``ready(its stdout)`` or ``timeout`` s have passed;
    returns the last stdout (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        out = guest.run(cmd, timeout=60).stdout
        if ready(out) or time.monotonic() >= deadline:
            return out
        time.sleep(0.1)


def ping(
    guest: Guest, address: str, server_log: Path | None = None, *, count: int = 3, v6: bool = False
) -> None:
    """``count`` pings from the guest to ``address``, all answered, or AssertionError with
    ping's output, the guest's logs and the server log's tail."""
    r = guest.run(f"ping {'-6 ' if v6 else ''}-c {count} -i 0.3 -W 3 {address}", timeout=60)
    if " 0% packet loss" not in r.stdout:
        raise AssertionError(
            f"ping {address} from the guest:\n{r.stdout}{r.stderr}\n" + explain(guest, server_log)
        )


def connect(
    guest: Guest,
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    auth: str = "mschapv2",
    ca_cert: str | Path | None = None,
    timeout: float = 30,
    routes: Sequence[str] = (),
    delay_ms: int = 20,
    attempts: int = 3,
    pppd_options: Sequence[str] = (),
    sstpc_options: Sequence[str] = (),
    address: str | None = None,
) -> dict[str, Any]:
    """Start sstpc in the guest against host:port and wait (timeout s per attempt) until ppp0
    has an address. Returns {"ifname", "local", "peer", "dns", "attempts", "seconds",
    "sstpc_log", "pppd_log", "pid"}; raises SstpcError with both logs otherwise.

    auth: "mschapv2", "eap-mschapv2" or "pap" (pppd refuses every other method), or
    "default" (no refuse-* option: what pppd does out of the box). ca_cert: None for --cert-warn
    (self-signed certificates pass with a warning), else a CA file on the host, or PEM text;
    sstpc checks it only after the HTTP 200 and wants the certificate's CN to equal `host`.
    routes: networks to route into ppp0 (pppd itself adds only the /32 to the peer).
    delay_ms/attempts: the sstpc race workaround (see GUEST_CONNECT); delay_ms=0 disables it.
    pppd_options/sstpc_options: added to the default option lists.
    address: the server's address when ``host`` is a name (the guest resolves it itself,
    e.g. from /etc/hosts; the route to the server is looked up by address).
    """
    if auth == "mschapv2":
        refuse = ["refuse-eap", "refuse-pap", "refuse-chap", "refuse-mschap"]
    elif auth == "pap":
        refuse = ["refuse-eap", "refuse-chap", "refuse-mschap", "refuse-mschap-v2"]
    elif auth == "eap-mschapv2":  # pppd >= 2.4.9 answers EAP type 26 (eap.c, CHAPMS)
        refuse = ["refuse-pap", "refuse-chap", "refuse-mschap", "refuse-mschap-v2"]
    elif auth == "default":
        refuse = []
    else:
        raise ValueError("auth must be 'mschapv2', 'eap-mschapv2', 'pap' or 'default'")
    guest.run(f"mkdir -p {WORK}", check=True)
    if ca_cert is None:
        cert_opts = ["--cert-warn"]
    else:
        pem = (
            str(ca_cert)
            if str(ca_cert).lstrip().startswith("-----BEGIN")
            else Path(ca_cert).read_text()
        )
        guest.run(f"cat > {WORK}/ca.pem", input=pem, check=True)
        cert_opts = ["--ca-cert", f"{WORK}/ca.pem"]
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # pppd options (sstpc passes everything after the server to pppd and adds `user` and its
    # plugin itself): the client does not ask the server to authenticate (noauth) and answers
    # only the chosen method; the server assigns the address (noipdefault); the guest's routes
    # stay (nodefaultroute); no compression; usepeerdns so the DNS servers are visible.
    ppp = [
        "noauth",
        *refuse,
        "noipdefault",
        "nodefaultroute",
        "nobsdcomp",
        "nodeflate",
        "usepeerdns",
        *pppd_options,
        "logfile",
        f"{WORK}/pppd.log",
        "debug",
    ]
    argv = [
        "sstpc",
        "--log-stderr",
        "--log-level",
        "4",
        *cert_opts,
        *sstpc_options,
        "--user",
        user,
        "--password",
        password,
        target,
        *ppp,
    ]
    return run_client(
        guest,
        address or host,
        argv,
        what=f"sstpc to {target} ({auth})",
        timeout=timeout,
        routes=routes,
        delay_ms=delay_ms,
        attempts=attempts,
    )


def run_client(
    guest: Guest,
    host: str,
    argv: Sequence[str],
    *,
    what: str,
    timeout: float = 30,
    routes: Sequence[str] = (),
    delay_ms: int = 20,
    attempts: int = 3,
) -> dict[str, Any]:
    """Run ``argv`` in the guest (a command that ends up as sstpc, e.g. a profile script
    that execs it) with connect()'s race workaround, and wait until ppp0 has an address.
    pppd should log to WORK/pppd.log (``logfile``) for the logs in the result or error."""
    args = {
        "work": WORK,
        "host": host,
        "argv": list(argv),
        "timeout": timeout,
        "delay_ms": delay_ms,
        "attempts": max(1, attempts),
        "race_message": RACE_MESSAGE,
        "routes": list(routes),
    }
    r = guest.run(
        ["python3", "-c", GUEST_CONNECT, json.dumps(args)], timeout=attempts * (timeout + 15) + 30
    )
    try:
        res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SstpcError(
            f"guest-side connect script failed (status {r.returncode}): {r.stdout}{r.stderr}"
        ) from None
    if not res.pop("ok"):
        raise SstpcError(
            f"{what}: {res.get('error')}",
            res.get("sstpc_log", ""),
            res.get("pppd_log", ""),
        )
    res.pop("error", None)
    return res


def disconnect(guest: Guest, *, graceful: bool = True, timeout: float = 10) -> dict[str, str]:
    """End the client's connection and return {"sstpc_log", "pppd_log"} (NULs stripped).

    graceful: SIGTERM to pppd, which sends an LCP Terminate-Request through the tunnel and
    exits; sstpc follows. Otherwise sstpc is killed first: the TLS connection just drops (as
    when a client vanishes). Whatever is left after `timeout` s is killed.
    """
    first = "pppd" if graceful else "sstpc"
    script = (
        f"pkill -x {first}; i=0; while pgrep -x 'sstpc|pppd' >/dev/null && "
        f"[ $i -lt {int(timeout * 10)} ]; do sleep 0.1; i=$((i+1)); done; "
        "pkill -x 'sstpc|pppd' && sleep 0.5; pkill -9 -x 'sstpc|pppd'; " + _SHOW_LOGS
    )
    return _split_logs(guest.run(script, timeout=timeout + 30).stdout)


# prints the sstpc logs of every attempt (NULs stripped), a marker, and pppd's log
_SHOW_LOGS = (
    f'for f in {WORK}/sstpc.log.*; do [ -f "$f" ] && echo "--- attempt ${{f##*.}}" && '
    f"tr -d '\\000' < \"$f\"; done; echo '@@PPPD@@'; cat {WORK}/pppd.log 2>/dev/null; true"
)


def _split_logs(out: str) -> dict[str, str]:
    sstpc_log, _, pppd_log = out.partition("@@PPPD@@\n")
    return {"sstpc_log": sstpc_log, "pppd_log": pppd_log}


def iperf(
    guest: Guest, server_ip: str, seconds: float = 5, *, port: int = 5201, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """iperf3 from the guest to server_ip:port (an iperf3 server must listen there, e.g.
    iperf_server()), guest->server then server->guest (-R). Mbit/s as received:
    {"guest_to_server": float, "server_to_guest": float, "retransmits": {...}}."""
    res: dict[str, Any] = {"retransmits": {}}
    for key, rev in (("guest_to_server", []), ("server_to_guest", ["-R"])):
        cmd = [
            "timeout",
            str(int(seconds) + 30),
            "iperf3",
            "-c",
            server_ip,
            "-p",
            str(port),
            "-t",
            str(seconds),
            "-J",
            *rev,
            *extra,
        ]
        r = guest.run(cmd, timeout=seconds + 60)
        try:
            j = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 {key} failed: {r.stdout}{r.stderr}") from None
        if "error" in j:
            raise RuntimeError(f"iperf3 {key} failed: {j['error']}")
        end = j["end"]
        res[key] = round(end["sum_received"]["bits_per_second"] / 1e6, 2)
        res["retransmits"][key] = end.get("sum_sent", {}).get("retransmits")
    return res


@contextlib.contextmanager
def iperf_server(bind: str, port: int = 5201, netns: str | None = None) -> Iterator[None]:
    """An iperf3 server on the host (in netns if given) bound to bind:port, for iperf()."""
    cmd = ["iperf3", "-s", "-B", bind, "-p", str(port)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(50):  # wait until it listens
            ss = (
                subprocess.run(
                    ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=False
                ).stdout
                if not netns
                else subprocess.run(
                    ["ip", "netns", "exec", netns, "ss", "-Hltn", f"sport = :{port}"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
            )
            if ss.strip() or p.poll() is not None:
                break
            time.sleep(0.1)
        if p.poll() is not None:
            raise RuntimeError(
                f"iperf3 -s on {bind}:{port} exited: {p.stderr.read() if p.stderr else ''}"
            )
        yield
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main() -> int:
    """python3 -m tests.realclient.sstpc connect HOST PORT USER PASSWORD [--pap] | disconnect"""
    import argparse

    ap = argparse.ArgumentParser(prog="python3 -m tests.realclient.sstpc")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("connect")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("user")
    c.add_argument("password")
    c.add_argument(
        "--auth", default="mschapv2", choices=("mschapv2", "eap-mschapv2", "pap", "default")
    )
    c.add_argument("--ca-cert")
    c.add_argument("--route", action="append", default=[])
    c.add_argument("--delay-ms", type=int, default=20)
    sub.add_parser("disconnect")
    i = sub.add_parser("iperf")
    i.add_argument("server_ip")
    i.add_argument("seconds", type=float, nargs="?", default=5)
    a = ap.parse_args()
    g = Guest()
    if not g.running():
        raise SystemExit("guest not running (python3 -m tests.realclient.guest boot)")
    if a.cmd == "connect":
        info = connect(
            g,
            a.host,
            a.port,
            a.user,
            a.password,
            auth=a.auth,
            ca_cert=a.ca_cert,
            routes=a.route,
            delay_ms=a.delay_ms,
        )
        print(json.dumps({k: v for k, v in info.items() if not k.endswith("_log")}, indent=1))
    elif a.cmd == "disconnect":
        logs = disconnect(g)
        print(logs["sstpc_log"], "\n----- pppd\n", logs["pppd_log"], sep="")
    else:
        print(json.dumps(iperf(g, a.server_ip, a.seconds), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
