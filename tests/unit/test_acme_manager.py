"""The ACME manager's scheduling with a fake order (the real one: tests/integration/
test_acme.py with pebble): backoff after failures, forced renewal, install through the
server's reload, the order off the event loop, shutdown not waiting for the CA."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sstpd import acmeclient
from sstpd.aio import acme as acme_mod
from sstpd.aio.acme import AcmeManager
from sstpd.aio.tlsroute import TlsRouter
from sstpd.config import parse_config


class FakeServer:
    def __init__(self, tmp: Path) -> None:
        self.config = parse_config(
            f'[server]\ncertificate = "{tmp}/c.pem"\nkey = "{tmp}/k.pem"\n'
            f'state_directory = "{tmp}"\n'
            '[acme]\nnames = ["vpn.example.test"]\nretry_interval = 100\n'
        )
        self.router = TlsRouter()
        self.cert_summary: dict[str, Any] | None = None
        self.reloads = 0

    def reload(self) -> dict[str, Any]:
        self.reloads += 1
        self.cert_summary = {
            "sha256": f"{self.reloads:064x}",
            "self_signed": False,
            "names": ["vpn.example.test"],
            "not_before": time.time(),
            "not_after": time.time() + 90 * 86400,
        }
        return {"ok": True, "cert_sha256": "ab" * 32}


async def until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def test_failure_backoff_then_forced_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acmeclient, "ari_time", lambda cfg, pem: None)  # the CA has no ARI
    calls: list[int] = []
    outcomes = [acmeclient.AcmeFailure("cannot reach the CA"), None]

    def fake_obtain(cfg: Any, state: str, host: Any, stop: Any) -> acmeclient.Issued:
        calls.append(threading.get_ident())
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return acmeclient.Issued(b"CHAIN", b"KEY", "https://ca/order/1")

    monkeypatch.setattr(acmeclient, "obtain", fake_obtain)

    async def main() -> None:
        server = FakeServer(tmp_path)
        m = AcmeManager(server)  # type: ignore[arg-type]
        await m.start()
        try:
            # no certificate: an order at once, which fails
            await until(lambda: m.renewal_failures == 1 and not m.in_progress)
            assert calls[0] != threading.get_ident()  # not on the event loop's thread
            assert m.last_error == "cannot reach the CA"
            await until(lambda: m.next_renewal is not None and m.next_renewal > time.time())
            assert m.next_renewal == pytest.approx(m.last_attempt + 100, abs=1)
            assert server.reloads == 0
            # forced: tried at once, installed through the reload
            assert m.renew_now().started is True
            await until(lambda: m.renewals == 1 and not m.in_progress)
            assert server.reloads == 1 and m.failures == 0 and m.last_error == ""
            assert (tmp_path / "c.pem").read_bytes() == b"CHAIN"
            assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
            # next: two thirds into the new certificate's lifetime
            s = server.cert_summary
            assert s is not None
            await until(
                lambda: (
                    m.next_renewal
                    == pytest.approx(s["not_before"] + (s["not_after"] - s["not_before"]) * 2 / 3)
                )
            )
        finally:
            m.close()

    asyncio.run(main())
    assert len(calls) == 2


def test_shutdown_does_not_wait_for_a_hanging_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def hanging(cfg: Any, state: str, host: Any, stop: Any) -> acmeclient.Issued:
        release.wait(30)
        raise acmeclient.AcmeFailure("stopped")

    monkeypatch.setattr(acmeclient, "obtain", hanging)

    async def main() -> None:
        m = AcmeManager(FakeServer(tmp_path))  # type: ignore[arg-type]
        await m.start()
        await until(lambda: m.in_progress)
        m.close()

    t0 = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t0 < 5
    release.set()


def test_in_thread_passes_exceptions() -> None:
    async def main() -> None:
        with pytest.raises(ZeroDivisionError):
            await acme_mod.in_thread(lambda: 1 // 0)
        assert await acme_mod.in_thread(lambda: threading.current_thread().name) == "sstpd-acme"

    asyncio.run(main())


def test_offloader_with_http01_schedules_from_the_obtained_certificate(tmp_path: Path) -> None:
    """tls = false: the daemon serves no certificate, but the one it obtained for the
    offloader must still drive the schedule (else it would order again at once)."""
    from sstpd import certs
    from sstpd.aio.tls import cert_summary

    certs.generate_self_signed(
        str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), common_name="vpn.example.test", sans=[]
    )
    text = (
        f'[server]\ntls = false\ncert_hash_sha256 = "{"ab" * 32}"\n'
        f'certificate = "{tmp_path}/c.pem"\nkey = "{tmp_path}/k.pem"\n'
    )
    assert cert_summary(parse_config(text)) is None  # no ACME: nothing to show
    config = parse_config(text + '[acme]\nnames = ["vpn.example.test"]\nchallenge = "http-01"\n')
    summary = cert_summary(config)
    assert summary is not None and summary["names"] == ["vpn.example.test"]


def test_ari_suggestion_earlier_than_two_thirds_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suggested = time.time() + 3600
    asked: list[bytes] = []

    def ari(cfg: Any, pem: bytes) -> float:
        asked.append(pem)
        return suggested

    monkeypatch.setattr(acmeclient, "ari_time", ari)
    (tmp_path / "c.pem").write_bytes(b"CERT")

    async def main() -> None:
        server = FakeServer(tmp_path)
        server.reload()  # a CA-issued certificate is in place: no order at start
        m = AcmeManager(server)  # type: ignore[arg-type]
        await m.start()
        try:
            await until(lambda: m.next_renewal is not None)
            assert m.next_renewal == pytest.approx(suggested)
            assert m.status().ari_suggestion == pytest.approx(suggested)
            assert asked == [b"CERT"]
        finally:
            m.close()

    asyncio.run(main())
