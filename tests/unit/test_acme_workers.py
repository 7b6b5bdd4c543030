"""[acme] with server.workers > 1 without processes: the ``acme-challenge`` link message
(codec, fuzz), the supervisor's fan-out of a challenge to every worker from the order's
thread, the supervisor's ACME manager installing through every worker's reload, and the
merged ``cert`` answer. The real thing: tests/integration/test_acme_workers.py."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sstpd import acmeclient
from sstpd.aio.acme import in_thread
from sstpd.aio.supervisor import Supervisor, Worker
from sstpd.aio.tlsroute import TlsRouter
from sstpd.aio.workers_link import LINK_COMMANDS, MAX_NAME, challenge_request, decode_challenge
from sstpd.config import parse_config
from sstpd.control import MAX_REQUEST, decode_request, encode
from sstpd.ctl import cert_text
from sstpd.records import CertificateRecord, CertRecord, ReloadRecord
from sstpd.records_link import ChallengeRecord

NAME = "vpn.example.test"


def test_challenge_request_round_trip_through_the_link_codec() -> None:
    cert_pem, key_pem = acmeclient.challenge_certificate(NAME, "token.thumbprint")
    line = encode(challenge_request(NAME, cert_pem, key_pem))
    req = decode_request(line.rstrip(b"\n"), LINK_COMMANDS)
    assert decode_challenge(req) == (NAME, (cert_pem, key_pem))
    # the worker's router takes it as it is
    router = TlsRouter()
    name, pems = decode_challenge(req)
    assert pems is not None
    router.add_challenge(name, *pems)
    assert router.pending == [NAME]
    # removal carries the name only
    clear = decode_request(encode(challenge_request(NAME)).rstrip(b"\n"), LINK_COMMANDS)
    assert set(clear) == {"cmd", "name"} and decode_challenge(clear) == (NAME, None)


def test_the_longest_name_fits_one_link_request() -> None:
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name) == 253
    cert_pem, key_pem = acmeclient.challenge_certificate(name, "t" * 43 + "." + "x" * 43)
    line = encode(challenge_request(name, cert_pem, key_pem))
    assert len(line) < MAX_REQUEST
    assert decode_challenge(decode_request(line.rstrip(b"\n"), LINK_COMMANDS))[0] == name


def test_acme_challenge_is_a_link_command_only() -> None:
    line = encode(challenge_request(NAME)).rstrip(b"\n")
    with pytest.raises(ValueError, match="unknown command"):
        decode_request(line)


@pytest.mark.parametrize(
    "req, reason",
    [
        ({}, '"name"'),
        ({"name": ""}, '"name"'),
        ({"name": 5}, '"name"'),
        ({"name": "x" * 254}, '"name"'),
        ({"name": "vpn.exämple"}, '"name"'),
        ({"name": NAME, "cert": "-----BEGIN CERTIFICATE-----"}, '"key"'),
        ({"name": NAME, "key": "-----BEGIN PRIVATE KEY-----"}, '"cert"'),
        ({"name": NAME, "cert": "junk", "key": "-----BEGIN PRIVATE KEY-----"}, '"cert"'),
        ({"name": NAME, "cert": "-----BEGIN CERTIFICATE-----", "key": 7}, '"key"'),
    ],
)
def test_bad_challenge_requests_are_refused(req: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        decode_challenge({"cmd": "acme-challenge", **req})
    assert "PRIVATE KEY-----" not in str(info.value)  # the reason never quotes the key


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "cert", "key", "other"]), json_values))
def test_decode_challenge_fuzz(req: dict[str, Any]) -> None:
    try:
        name, pems = decode_challenge(req)
    except ValueError:
        return
    assert isinstance(name, str) and 0 < len(name) <= MAX_NAME
    assert pems is None or all(isinstance(p, bytes) for p in pems)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_link_line_fuzz(line: bytes) -> None:
    """Whatever arrives on the link: a request or ValueError, and the codec's own
    round trip holds for what it accepts."""
    try:
        req = decode_request(line, LINK_COMMANDS)
        name, pems = decode_challenge(req)
    except ValueError:
        return
    again = decode_challenge(json.loads(encode(challenge_request(name, *(pems or (None, None))))))
    assert again == (name, pems)


# ---------------------------------------------------------------------------------------
# the supervisor's side, with fake workers


class Alive:
    returncode = None
    pid = 1


def supervisor(tmp_path: Path) -> Supervisor:
    c = parse_config(
        f"[server]\ncertificate = '{tmp_path}/c.pem'\nkey = '{tmp_path}/k.pem'\n"
        f"state_directory = '{tmp_path}'\ncontrol_socket = '{tmp_path}/c.sock'\n"
        f"[acme]\nnames = ['{NAME}']\nretry_interval = 100\n"
    )
    return Supervisor(c, None, 2)


def fake_workers(sup: Supervisor, answer: Any) -> list[dict[str, Any]]:
    asked: list[dict[str, Any]] = []
    for w in sup.workers:
        w.proc = Alive()  # type: ignore[assignment]

        def call(req: dict[str, Any], w: Worker = w) -> Any:
            async def go() -> dict[str, Any] | None:
                asked.append({"worker": w.index, **req})
                return answer(w, req)  # type: ignore[no-any-return]

            return go()

        w.call = call  # type: ignore[method-assign]
    return asked


def routers(sup: Supervisor) -> Any:
    """Each worker's answer to ``acme-challenge`` as a worker gives it (``Admin``): a TLS
    router per worker takes the request, the answer lists its pending names."""
    held = {w.index: TlsRouter() for w in sup.workers}

    def answer(w: Worker, req: dict[str, Any]) -> dict[str, Any]:
        name, pems = decode_challenge(req)
        router = held[w.index]
        if pems is None:
            router.remove_challenge(name)
        else:
            router.add_challenge(name, *pems)
        return {"ok": True, **ChallengeRecord(pending=tuple(router.pending)).to_json()}

    return answer


def test_a_challenge_reaches_every_worker_before_add_returns(tmp_path: Path) -> None:
    cert_pem, key_pem = acmeclient.challenge_certificate(NAME, "k.a")

    async def go() -> list[dict[str, Any]]:
        sup = supervisor(tmp_path)
        asked = fake_workers(sup, routers(sup))
        # from another thread, as the order does; the loop answers meanwhile
        await in_thread(lambda: sup.acme.router.add_challenge(NAME, cert_pem, key_pem))
        assert len(asked) == 2 and sup.acme.router.pending == [NAME]
        manager = sup.acme.manager
        assert manager is not None and manager.status().pending_challenges == (NAME,)
        await in_thread(lambda: sup.acme.router.remove_challenge(NAME))
        assert sup.acme.router.pending == []
        sup.control.close()
        return asked

    asked = asyncio.run(go())
    assert [(a["worker"], a["cmd"]) for a in asked] == [
        (0, "acme-challenge"),
        (1, "acme-challenge"),
        (0, "acme-challenge"),
        (1, "acme-challenge"),
    ]
    assert {(a["cert"], a["key"]) for a in asked[:2]} == {(cert_pem.decode(), key_pem.decode())}
    assert all("cert" not in a and "key" not in a for a in asked[2:])


def test_a_worker_that_does_not_take_the_challenge_fails_the_attempt(tmp_path: Path) -> None:
    cert_pem, key_pem = acmeclient.challenge_certificate(NAME, "k.a")

    async def go() -> None:
        sup = supervisor(tmp_path)
        took = routers(sup)
        fake_workers(sup, lambda w, req: None if w.index == 1 else took(w, req))
        with pytest.raises(acmeclient.AcmeFailure, match="worker 1 did not take the challenge"):
            await in_thread(lambda: sup.acme.router.add_challenge(NAME, cert_pem, key_pem))
        # a worker that is not running (restarting) does not count: it does not listen
        sup.workers[1].proc = None
        await in_thread(lambda: sup.acme.router.add_challenge(NAME, cert_pem, key_pem))
        # and gets the pending challenge once it is ready again
        sup.workers[1].proc = Alive()  # type: ignore[assignment]
        asked = fake_workers(sup, took)
        await sup.acme.router.replay(sup.workers[1])
        assert [(a["worker"], a["name"], "key" in a) for a in asked] == [(1, NAME, True)]
        sup.control.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    "answer",
    [
        {"ok": True},  # not a ChallengeRecord
        {"ok": True, "pending": "vpn.example.test"},
        {"ok": True, "pending": ["other.example.test"]},  # did not take this one
    ],
)
def test_a_worker_whose_answer_does_not_list_the_name_fails_the_attempt(
    tmp_path: Path, answer: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    cert_pem, key_pem = acmeclient.challenge_certificate(NAME, "k.a")
    caplog.set_level(logging.WARNING, logger="sstpd")

    async def go() -> None:
        sup = supervisor(tmp_path)
        took = routers(sup)
        fake_workers(sup, lambda w, req: answer if w.index == 0 else took(w, req))
        with pytest.raises(acmeclient.AcmeFailure, match="worker 0 did not take the challenge"):
            await in_thread(lambda: sup.acme.router.add_challenge(NAME, cert_pem, key_pem))
        sup.control.close()

    asyncio.run(go())
    malformed = "pending" not in answer or isinstance(answer["pending"], str)
    logged = [r.getMessage() for r in caplog.records if "unexpected answer" in r.getMessage()]
    assert len(logged) == (1 if malformed else 0), logged
    assert all("PRIVATE KEY-----" not in r.getMessage() for r in caplog.records)


def test_supervisor_manager_installs_through_every_workers_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order's result is written once and every worker reloads; ``cert`` then shows
    what each worker serves; ``renew`` and the ACME counters are the supervisor's."""
    from sstpd import certs

    monkeypatch.setattr(acmeclient, "ari_time", lambda cfg, pem: None)
    from cryptography.hazmat.primitives.serialization import Encoding

    # what the CA issues: a leaf signed by a CA (a self-signed one would be ordered again)
    ca_key = certs.new_key("ec")
    ca = certs.build_certificate(ca_key, common_name="Fake CA", ca=True)
    leaf_key = certs.new_key("ec")
    leaf = certs.build_certificate(leaf_key, common_name=NAME, issuer=(ca_key, ca))
    chain = leaf.public_bytes(Encoding.PEM) + ca.public_bytes(Encoding.PEM)
    orders: list[int] = []

    def fake_obtain(cfg: Any, state: str, host: Any, stop: Any) -> acmeclient.Issued:
        orders.append(threading.get_ident())
        host.add_tls_alpn(NAME, *acmeclient.challenge_certificate(NAME, "k.a"))
        host.remove_tls_alpn(NAME)
        return acmeclient.Issued(chain, certs.private_key_pem(leaf_key), "https://ca/o/1")

    monkeypatch.setattr(acmeclient, "obtain", fake_obtain)
    served: dict[int, dict[str, object]] = {}

    async def go() -> dict[str, Any]:
        sup = supervisor(tmp_path)
        acme = sup.acme.manager
        assert acme is not None and sup.acme.cert_summary is None  # no certificate yet

        def answer(w: Worker, req: dict[str, Any]) -> dict[str, Any]:
            if req["cmd"] == "reload":  # the worker loads the files the manager wrote
                summary = certs.certificate_summary(str(tmp_path / "c.pem"))
                served[w.index] = summary
                rec = ReloadRecord(
                    changed=("certificate",),
                    needs_restart=(),
                    users=1,
                    cert_sha256=str(summary["sha256"]),
                )
                return {"ok": True, **rec.to_json()}
            if req["cmd"] == "cert":
                have = served.get(w.index)
                cert = CertRecord(
                    certificate=CertificateRecord.from_json(have) if have else None,
                    path=str(tmp_path / "c.pem") if have else "",
                    acme=None,  # a worker runs no manager
                    worker=w.index,
                    challenge_handshakes=w.index + 1,
                )
                return {"ok": True, **cert.to_json()}
            return {"ok": True}

        took = routers(sup)
        asked = fake_workers(
            sup, lambda w, req: took(w, req) if req["cmd"] == "acme-challenge" else answer(w, req)
        )
        await acme.start()
        try:
            deadline = time.monotonic() + 10
            while acme.renewals < 1 or acme.in_progress:
                assert time.monotonic() < deadline, (acme.status(), asked)
                await asyncio.sleep(0.02)
            cmds = [(a["worker"], a["cmd"]) for a in asked]
            assert cmds.count((0, "reload")) == cmds.count((1, "reload")) == 1
            assert cmds.count((0, "acme-challenge")) == cmds.count((1, "acme-challenge")) == 2
            merged = await sup.handle({"cmd": "cert"})
            acme.in_progress = True  # renew is the supervisor's manager's
            renew = await sup.handle({"cmd": "renew"})
            assert renew == {"ok": True, "started": False, "message": "a renewal is in progress"}
            stats = sup.merge_stats([(w, None) for w in sup.workers])
            assert stats.acme_renewals == 1 and stats.acme_renewal_failures == 0
        finally:
            acme.close()
            sup.control.close()
        return merged

    merged = asyncio.run(go())
    assert orders and orders[0] != threading.get_ident()
    sha = merged["certificate"]["sha256"]
    assert merged["acme"]["renewals"] == 1 and merged["acme"]["last_error"] == ""
    assert merged["workers"] == [
        {"worker": 0, "running": True, "sha256": sha, "challenge_handshakes": 1},
        {"worker": 1, "running": True, "sha256": sha, "challenge_handshakes": 2},
    ]
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert merged["challenge_handshakes"] == 3  # both workers' validations
    text = cert_text(CertRecord.from_json(merged))
    assert "worker 0" in text and "worker 1" in text and sha[:16] in text
