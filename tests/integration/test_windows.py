"""Windows-shaped conformance: the scripted client of ``windows_client.py`` (the bytes a
Windows 10/11 profile sends, kept as data) against the real daemon with its default
authentication settings, in network namespaces. One case per way of making the profile,
plus a wrong password and a client that can do nothing sstpd offers."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import (
    SERVER_IP,
    TUNNEL_IP,
    Daemon,
    Netns,
    namespaces,
    running,
    sstpd_connect,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdw") as n:
        yield n


@pytest.fixture(scope="module")
def daemon(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    # no [auth] methods: the defaults
    with running(Daemon(net, tmp_path_factory.mktemp("windows"))) as d:
        yield d


def windows(net: Netns, daemon: Daemon, profile: str) -> dict[str, object]:
    r = net.run(
        net.cli,
        sys.executable,
        "-m",
        "tests.integration.windows_client",
        profile,
        "--host",
        SERVER_IP,
        "--ca-file",
        str(daemon.cert),
        "--peer",
        TUNNEL_IP,
        check=False,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def assert_open_tunnel(res: dict[str, object]) -> None:
    assert "error" not in res, res
    assert res["http"] == "HTTP/1.1 200 OK"
    assert res["binding"] == "SHA256" and res["lcp"] == "opened"
    assert str(res["local"]).startswith("10.77.0.")
    assert res["ipcp_options"] == [3, 0x81, 0x83]  # NBNS rejected: none configured
    assert res["protocol_rejects"] == ["80FD", "8057"]  # CCP and IPV6CP
    assert res["pings"] == ["FF 03 00 21", "21"]
    assert res["disconnected"] is True
    assert "code_rejects" not in res  # Identification is never Code-Rejected


def test_settings_app_profile_eap_mschapv2(daemon: Daemon, net: Netns) -> None:
    res = windows(net, daemon, "settings-eap")
    assert_open_tunnel(res)
    assert res["auth"] == "eap-mschapv2"
    assert "LCP Ack of the server's request (auth c227)" in res["log"]  # type: ignore[operator]
    log = daemon.wait_log("user 'alice' (eap-mschapv2) connected")
    assert "crypto binding verified (SHA256)" in log
    assert "LCP Identification 'MSRASV5.20' ignored" in log
    assert "LCP Identification 'MSRAS-0-DESKTOP-SSTPD1' ignored" in log


def test_powershell_default_profile_mschapv2(daemon: Daemon, net: Netns) -> None:
    res = windows(net, daemon, "powershell-default")
    assert_open_tunnel(res)
    assert res["auth"] == "mschapv2"
    assert "LCP Nak of the server's auth c227 toward c22381" in res["log"]  # type: ignore[operator]
    daemon.wait_log("user 'alice' (mschapv2) connected")


def test_powershell_eap_profile(daemon: Daemon, net: Netns) -> None:
    res = windows(net, daemon, "powershell-eap")
    assert_open_tunnel(res)
    assert res["auth"] == "eap-mschapv2"
    daemon.wait_log("user 'bob' (eap-mschapv2) connected")


def test_wrong_password_then_retry(daemon: Daemon, net: Netns) -> None:
    res = windows(net, daemon, "settings-eap-wrong-password")
    assert "error" not in res, res
    assert str(res["failure"]).startswith("E=691 R=0 C=")
    assert res["eap_failure"] is True
    assert res["lcp_terminate"] == "authentication failed"
    daemon.wait_log(
        "user 'alice' authentication failed (eap-mschapv2, E=691: authentication failure)"
    )
    # Windows asks for the password again and dials anew
    assert_open_tunnel(windows(net, daemon, "settings-eap"))


def test_client_offering_nothing_we_do_gets_one_clear_line(daemon: Daemon, net: Netns) -> None:
    res = windows(net, daemon, "chap-md5-only")
    assert "error" in res
    line = (
        "closed: peer refused every configured authentication method: it asked for CHAP-MD5; "
        "configured: eap-mschapv2, mschapv2, pap"
    )
    log = daemon.wait_log(line)
    assert log.count("asked for CHAP-MD5") == 1


def test_identification_and_eap_floods_end_that_session_only(daemon: Daemon, net: Netns) -> None:
    before = daemon.log_text()
    res = windows(net, daemon, "hostile-floods")
    failure = str(res["eap_after_garbage"])
    assert failure[:2] == "04" and failure[4:] == "0004", res  # EAP-Failure
    assert res["lcp_terminate"] == "authentication failed"
    log = daemon.wait_log("16 invalid EAP packets")[len(before) :]
    assert log.count("LCP Identification 'MSRASV5.20' ignored") == 8
    assert log.count("more LCP Identification packets") == 1
    # 4 from the authenticator, at most 4 more from the link once the session is closing
    assert 4 <= log.count("EAP packet ignored") <= 8
    assert "authentication failed (eap-mschapv2, 16 invalid EAP packets, the last:" in log
    assert_open_tunnel(windows(net, daemon, "powershell-eap"))  # the daemon still serves


def test_package_client_eap_mschapv2(daemon: Daemon, net: Netns, tmp_path: Path) -> None:
    res = net.client_tool("ping", *daemon.client_args(), "--auth", "eap-mschapv2")
    assert res["replies"] == 3 and res["hash"] == "SHA256"
    daemon.wait_log("user 'alice' (eap-mschapv2) connected")
    # a domain-qualified name, as Windows sends it; the password in a file, not on argv
    with sstpd_connect(
        net, daemon, tmp_path, "sstpw0", "--auth", "eap-mschapv2", user="CORP\\carol"
    ) as (cli, info):
        assert info["peer"] == TUNNEL_IP, info
        r = net.run(net.cli, "ping", "-c", "2", "-i", "0.2", "-W", "2", TUNNEL_IP)
        assert " 0% packet loss" in r.stdout
    assert cli.returncode == 0
    daemon.wait_log("user 'carol' (eap-mschapv2) connected")


def test_daemon_survived(daemon: Daemon) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.log_text()
