"""sstpd.records: the control socket's answers, one definition written by the daemon and
read by sstpctl and the status app. Round trips through real JSON text, the keys the
README and older clients rely on, and what a malformed answer does."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sstpd.aio.stats import Histogram
from sstpd.control import SESSION_FIELDS
from sstpd.proto.outcome import Outcome
from sstpd.records import (
    AcmeRecord,
    AdmissionRecord,
    CertificateRecord,
    CertRecord,
    DrainRecord,
    HealthRecord,
    HistogramRecord,
    KickRecord,
    RecordError,
    ReloadRecord,
    RenewRecord,
    SessionRecord,
    StatsRecord,
    WorkerCertRecord,
    sessions_from_json,
    sessions_to_json,
)


def wire(obj: dict[str, Any]) -> Any:
    """What the other end of the socket gets: the JSON text parsed again."""
    return json.loads(json.dumps(obj))


ints = st.integers(min_value=0, max_value=2**62)
floats = st.floats(min_value=0, max_value=2e9, allow_nan=False)
text = st.text(max_size=20)

healths = st.builds(
    HealthRecord,
    status=st.sampled_from(["ok", "draining", "full", "pool_full", "stopping"]),
    accepting=st.booleans(),
    draining=st.booleans(),
    pool_free=st.none() | ints,
    warnings=st.lists(text, max_size=3).map(tuple),
)
sessions = st.builds(
    SessionRecord,
    id=ints,
    user=text,
    peer=text,
    peer_host=text,
    peer_port=st.integers(0, 65535),
    address=text,
    connected_since=floats,
    duration=floats,
    rx_bytes=ints,
    rx_packets=ints,
    tx_bytes=ints,
    tx_packets=ints,
    dropped=ints,
    auth_method=st.sampled_from(["pap", "mschapv2", "eap-mschapv2"]),
    tls_version=text,
    tls_cipher=text,
    binding_hash=st.sampled_from(["", "SHA1", "SHA256"]),
    cert_hash=text,
)


@st.composite
def histograms(draw: st.DrawFn) -> HistogramRecord:
    h = Histogram()
    for v in draw(st.lists(st.floats(0, 100, allow_nan=False), max_size=20)):
        h.observe(v)
    return h.record()


admissions = st.builds(
    AdmissionRecord,
    authenticated=ints,
    pending=ints,
    pending_sources=ints,
    pending_total_limit=ints,
    pending_per_source_limit=ints,
    auth_delayed=ints,
    auth_blocks=ints,
    auth_blocked=st.fixed_dictionaries({"sources": ints, "users": ints}),
    accept_errors=ints,
    internal_errors=ints,
    open_files_limit=ints,
)
stats_records = st.builds(
    StatsRecord,
    health=healths,
    started_at=floats,
    uptime=floats,
    sessions=ints,
    handshakes_in_progress=ints,
    max_sessions=ints,
    handshakes=st.fixed_dictionaries({o.value: ints for o in Outcome}),
    auth_failures=ints,
    crypto_binding_failures=ints,
    rx_bytes=ints,
    rx_packets=ints,
    tx_bytes=ints,
    tx_packets=ints,
    dropped_spoofed=ints,
    dropped_overflow=ints,
    tun_no_route=ints,
    handshake_latency=histograms(),
    pool_size=ints,
    pool_in_use=ints,
    reloads=ints,
    reload_failures=ints,
    version=text,
    admission=st.none() | admissions,
    certificate_not_after=st.none() | floats,
    acme_renewals=ints,
    acme_renewal_failures=ints,
)


certificates = st.builds(
    CertificateRecord,
    names=st.lists(text, max_size=3).map(tuple),
    subject=text,
    issuer=text,
    not_before=floats,
    not_after=floats,
    sha256=text,
    self_signed=st.booleans(),
)
acmes = st.builds(
    AcmeRecord,
    names=st.lists(text, min_size=1, max_size=3).map(tuple),
    directory=text,
    challenge=st.sampled_from(["tls-alpn-01", "http-01"]),
    next_renewal=st.none() | floats,
    last_attempt=st.none() | floats,
    last_success=st.none() | floats,
    last_error=text,
    in_progress=st.booleans(),
    renewals=ints,
    renewal_failures=ints,
    ari_suggestion=st.none() | floats,
    pending_challenges=st.lists(text, max_size=2).map(tuple),
)
worker_certs = st.builds(
    WorkerCertRecord, worker=ints, running=st.booleans(), sha256=text, challenge_handshakes=ints
)
cert_records = st.builds(
    CertRecord,
    certificate=st.none() | certificates,
    path=text,
    acme=st.none() | acmes,
    worker=ints,
    challenge_handshakes=ints,
    workers=st.lists(worker_certs, max_size=3).map(tuple),
)
reload_records = st.builds(
    ReloadRecord,
    changed=st.lists(text, max_size=3).map(tuple),
    needs_restart=st.lists(text, max_size=3).map(tuple),
    users=ints,
    cert_sha256=text,
    workers=ints,
)
kick_records = st.builds(KickRecord, kicked=st.lists(ints, max_size=5).map(tuple))
drain_records = st.builds(DrainRecord, health=healths, sessions=st.none() | ints)
renew_records = st.builds(RenewRecord, started=st.booleans(), message=text)


@given(healths)
def test_health_round_trip(rec: HealthRecord) -> None:
    assert HealthRecord.from_json(wire(rec.to_json())) == rec


@given(st.lists(sessions, max_size=4))
def test_sessions_round_trip(recs: list[SessionRecord]) -> None:
    answer = wire({"ok": True, **sessions_to_json(recs)})
    assert sessions_from_json(answer) == recs


@given(stats_records)
def test_stats_round_trip(rec: StatsRecord) -> None:
    assert StatsRecord.from_json(wire(rec.to_json())) == rec


@given(stats_records)
def test_stats_answer_is_flat_with_the_documented_keys(rec: StatsRecord) -> None:
    """Health fields and the pre-authentication counters sit beside the others (README,
    `sstpctl --json stats`, `/api/stats`); ``health``/``admission`` are not keys."""
    out = rec.to_json()
    assert "health" not in out and "admission" not in out
    assert list(out)[:4] == ["version", "status", "accepting", "draining"]
    assert ("pending" in out) == (rec.admission is not None)
    assert out["handshake_latency"]["buckets"][-1][0] == "+Inf"
    assert set(out["handshakes"]) == {o.value for o in Outcome}


@given(cert_records)
def test_cert_round_trip(rec: CertRecord) -> None:
    assert CertRecord.from_json(wire({"ok": True, **rec.to_json()})) == rec


@given(reload_records)
def test_reload_round_trip(rec: ReloadRecord) -> None:
    assert ReloadRecord.from_json(wire({"ok": True, **rec.to_json()})) == rec


@given(kick_records)
def test_kick_round_trip(rec: KickRecord) -> None:
    assert KickRecord.from_json(wire({"ok": True, **rec.to_json()})) == rec


@given(drain_records)
def test_drain_round_trip(rec: DrainRecord) -> None:
    assert DrainRecord.from_json(wire({"ok": True, **rec.to_json()})) == rec


@given(renew_records)
def test_renew_round_trip(rec: RenewRecord) -> None:
    assert RenewRecord.from_json(wire({"ok": True, **rec.to_json()})) == rec


def test_drain_and_renew_answers_keep_their_keys() -> None:
    """``drain``/``undrain`` answered the health fields before the record (and still do,
    with ``sessions``); ``renew`` answered ``started`` and ``message``."""
    health = HealthRecord(status="draining", accepting=False, draining=True, pool_free=3)
    assert DrainRecord(health=health, sessions=2).to_json() == {
        "status": "draining",
        "accepting": False,
        "draining": True,
        "pool_free": 3,
        "warnings": [],
        "sessions": 2,
    }
    # a daemon from before the record: the health fields only
    older = DrainRecord.from_json({"ok": True, **health.to_json()})
    assert older == DrainRecord(health=health) and older.sessions is None
    assert RenewRecord(started=True, message="renewal started").to_json() == {
        "started": True,
        "message": "renewal started",
    }


def test_malformed_drain_and_renew_answers_name_the_key() -> None:
    good = DrainRecord(health=HealthRecord(status="ok", accepting=True), sessions=1).to_json()
    with pytest.raises(RecordError) as exc:
        DrainRecord.from_json(good | {"sessions": "1"})
    assert str(exc.value) == "DrainRecord.sessions: str '1' is not int"
    with pytest.raises(RecordError) as exc:  # the flat health part says whose it is
        DrainRecord.from_json(good | {"warnings": ["a", 2]})
    assert str(exc.value) == "DrainRecord: HealthRecord.warnings[1]: int 2 is not str"
    with pytest.raises(RecordError, match=r"^DrainRecord: HealthRecord: no 'accepting'$"):
        DrainRecord.from_json({"status": "ok"})
    with pytest.raises(RecordError, match=r"^RenewRecord.started: str 'yes' is not bool$"):
        RenewRecord.from_json({"ok": True, "started": "yes", "message": ""})
    with pytest.raises(RecordError, match=r"^RenewRecord: no 'message'$"):
        RenewRecord.from_json({"ok": True, "started": True})


def test_histograms_add_up() -> None:
    a, b = Histogram(bounds=(0.1, 1.0)), Histogram(bounds=(0.1, 1.0))
    for v in (0.05, 0.5):
        a.observe(v)
    b.observe(3.0)
    both = a.record() + b.record()
    assert both.buckets == ((0.1, 1), (1.0, 2), (math.inf, 3))
    assert (both.sum, both.count) == (3.55, 3)
    with pytest.raises(ValueError, match="different bounds"):
        a.record() + Histogram(bounds=(0.1,)).record()


@given(cert_records)
def test_cert_answer_has_the_keys_sstpctl_and_scripts_read(rec: CertRecord) -> None:
    """Nested objects as before the records: ``certificate`` and ``acme`` are objects or
    null, ``workers`` a list of objects (README, ``sstpctl --json cert``)."""
    out = wire(rec.to_json())
    assert {"certificate", "path", "acme", "workers", "challenge_handshakes"} <= set(out)
    assert out["certificate"] is None or set(out["certificate"]) == {
        "names",
        "subject",
        "issuer",
        "not_before",
        "not_after",
        "sha256",
        "self_signed",
    }
    assert out["acme"] is None or {"next_renewal", "last_error", "renewals"} <= set(out["acme"])
    assert all(
        set(w) == {"worker", "running", "sha256", "challenge_handshakes"} for w in out["workers"]
    )


def test_reload_and_kick_answers_keep_their_keys() -> None:
    rec = ReloadRecord(changed=("users",), needs_restart=(), users=2, cert_sha256="ab")
    assert rec.to_json() == {
        "changed": ["users"],
        "needs_restart": [],
        "users": 2,
        "cert_sha256": "ab",
        "workers": 1,
    }
    # a daemon from before the records sent no "workers"
    older = {"ok": True, "changed": [], "needs_restart": [], "users": 0, "cert_sha256": ""}
    assert ReloadRecord.from_json(older).workers == 1
    assert KickRecord(kicked=(3, 4)).to_json() == {"kicked": [3, 4]}


def test_a_malformed_nested_record_names_its_place() -> None:
    good = CertRecord(certificate=None, path="", acme=None).to_json()
    with pytest.raises(RecordError, match=r"CertRecord.certificate: CertificateRecord: no 'names'"):
        CertRecord.from_json(good | {"certificate": {"sha256": "ab"}})
    with pytest.raises(RecordError, match=r"KickRecord.kicked\[1\]: str 'x' is not int"):
        KickRecord.from_json({"kicked": [1, "x"]})
    with pytest.raises(RecordError, match=r"CertRecord.workers\[0\]"):
        CertRecord.from_json(good | {"workers": [{"worker": 0, "running": "yes"}]})
    with pytest.raises(RecordError, match="not a JSON object"):
        CertRecord.from_json(good | {"acme": []})


def test_session_fields_are_the_record_fields() -> None:
    assert tuple(f.name for f in fields(SessionRecord)) == SESSION_FIELDS
    assert SESSION_FIELDS[:3] == ("id", "user", "peer")


def test_histogram_record_from_the_counter() -> None:
    h = Histogram(bounds=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    rec = h.record()
    assert rec.buckets == ((0.1, 2), (1.0, 3), (math.inf, 4)) and rec.count == 4
    assert rec.to_json() == {"buckets": [[0.1, 2], [1.0, 3], ["+Inf", 4]], "sum": 3.65, "count": 4}


GOOD_SESSION = {f: 0 for f in SESSION_FIELDS} | {
    f: "" for f in ("user", "peer", "peer_host", "address", "ipv6_prefix", "auth_method")
} | {f: "" for f in ("tls_version", "tls_cipher", "binding_hash", "cert_hash")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "7"}, "SessionRecord.id: str '7' is not int"),
        ({"id": True}, "SessionRecord.id: bool True is not int"),
        ({"user": None}, "SessionRecord.user: NoneType None is not str"),
        ({"duration": "1.5"}, "SessionRecord.duration: str '1.5' is not float"),
    ],
)
def test_wrong_types_name_the_key(change: dict[str, Any], message: str) -> None:
    SessionRecord.from_json(GOOD_SESSION)  # the base is fine
    with pytest.raises(RecordError) as exc:
        SessionRecord.from_json(GOOD_SESSION | change)
    assert str(exc.value) == message


def test_missing_keys_and_shapes() -> None:
    with pytest.raises(RecordError, match="no 'user'"):
        SessionRecord.from_json({k: v for k, v in GOOD_SESSION.items() if k != "user"})
    with pytest.raises(RecordError, match="not a JSON object"):
        SessionRecord.from_json([1, 2])
    with pytest.raises(RecordError, match='no "sessions" list'):
        sessions_from_json({"ok": True})
    with pytest.raises(RecordError, match="not \\[le, count\\]"):
        HistogramRecord.from_json({"buckets": [[1.0]], "sum": 0, "count": 0})


def test_unknown_keys_are_ignored_and_defaults_fill_in() -> None:
    """A newer daemon may add keys; an older one lacks the ones with defaults."""
    rec = SessionRecord.from_json(GOOD_SESSION | {"ipv6_address": "2001:db8::2"})
    assert rec.id == 0
    no_hash = {k: v for k, v in GOOD_SESSION.items() if k != "cert_hash"}
    assert SessionRecord.from_json(no_hash).cert_hash == ""
    health = HealthRecord.from_json({"status": "ok", "accepting": True, "future": 1})
    assert health == HealthRecord(status="ok", accepting=True)
    assert health.draining is False and health.pool_free is None and health.warnings == ()
