"""ACME behind a TLS offloader: the daemon runs plain HTTP (tls = false) and gets the
certificate for the offloader through HTTP-01 from Debian's pebble. It must write it to
server.certificate/server.key once and then wait for the renewal time, not order again."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.integration.netns import Daemon, Netns, namespaces
from tests.integration.pebble import (
    NAME,
    Pebble,
    acme_section,
    cert_state,
    pebble_running,
    start_without_certificate,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
    pytest.mark.skipif(shutil.which("pebble") is None, reason="needs Debian's pebble"),
]


@pytest.fixture(scope="module")
def net() -> Iterator[Netns]:
    with namespaces("sstpdo") as n:
        yield n


@pytest.fixture(scope="module")
def pebble(net: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with pebble_running(Pebble(net, tmp_path_factory.mktemp("pebble-offload"))) as p:
        yield p


@pytest.fixture(scope="module")
def daemon(
    net: Netns, pebble: Pebble, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    d = Daemon(
        net,
        tmp_path_factory.mktemp("acme-offload-daemon"),
        port=8080,
        extra_config=f"""tls = false
cert_hash_sha256 = "{"ab" * 32}"
{acme_section(pebble, challenge="http-01")}""",
    )
    start_without_certificate(d)  # it must serve a placeholder and order one
    yield d
    d.stop()


def test_certificate_for_the_offloader_obtained_once(daemon: Daemon) -> None:
    assert "plain HTTP" in daemon.log_text()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ans = cert_state(daemon)
        if ans["certificate"] and not ans["certificate"]["self_signed"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(daemon.log_text()[-5000:])
    assert ans["certificate"]["names"] == [NAME]
    assert ans["path"] == str(daemon.cert)
    assert (daemon.workdir / "tls" / "server.key").stat().st_mode & 0o777 == 0o600
    # and then it waits for two thirds of the lifetime instead of ordering again
    time.sleep(3)
    ans = cert_state(daemon)
    assert ans["acme"]["renewals"] == 1 and ans["acme"]["renewal_failures"] == 0
    assert ans["acme"]["next_renewal"] > time.time() + 86400
    assert daemon.log_text().count("ACME: requesting a certificate") == 1
