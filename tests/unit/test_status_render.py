"""sstpd.status: the pure render function, the metrics text and the page, without a daemon."""

from __future__ import annotations

import json
import wsgiref.util
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sstpd.aio.stats import OUTCOMES, Histogram
from sstpd.control import DaemonUnreachable
from sstpd.records import StatsRecord
from sstpd.status import create_app, render
from sstpd.status.metrics import render_metrics

NOW = 1_764_000_000.0


def stats(**over: Any) -> dict[str, Any]:
    h = Histogram()
    for v in (0.02, 0.2, 0.3, 7.0):
        h.observe(v)
    base: dict[str, Any] = {
        "ok": True,
        "version": "0.1.0",
        "status": "ok",
        "accepting": True,
        "draining": False,
        "started_at": NOW - 3700,
        "uptime": 3700.0,
        "sessions": 1,
        "handshakes_in_progress": 0,
        "max_sessions": 1000,
        "handshakes": {k: i for i, k in enumerate(OUTCOMES)} | {"opened": 4},
        "auth_failures": 2,
        "crypto_binding_failures": 2,
        "rx_bytes": 123456,
        "rx_packets": 100,
        "tx_bytes": 654321,
        "tx_packets": 200,
        "dropped_spoofed": 1,
        "dropped_overflow": 0,
        "dropped_dhcp": 4,
        "dhcp_answered": 0,
        "tun_no_route": 3,
        "handshake_latency": h.record().to_json(),
        "pool_size": 253,
        "pool_in_use": 1,
        "reloads": 1,
        "reload_failures": 0,
    }
    return base | over


SESSION = {
    "id": 7,
    "user": "alice",
    "peer": "192.0.2.10:50123",
    "peer_host": "192.0.2.10",
    "peer_port": 50123,
    "address": "10.77.0.2",
    "connected_since": NOW - 65,
    "duration": 65.0,
    "rx_bytes": 2048,
    "rx_packets": 20,
    "tx_bytes": 4096,
    "tx_packets": 21,
    "dropped": 0,
    "auth_method": "mschapv2",
    "tls_version": "TLSv1.3",
    "tls_cipher": "TLS_AES_256_GCM_SHA384",
    "binding_hash": "SHA256",
    "cert_hash": "ab" * 32,
}


def fake(answers: dict[str, dict[str, Any]] | None = None) -> Callable[[str], dict[str, Any]]:
    data = {
        "health": {"ok": True, "status": "ok", "accepting": True, "draining": False},
        "stats": stats(),
        "sessions": {"ok": True, "sessions": [dict(SESSION)]},
    } | (answers or {})

    def query(cmd: str) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(data[cmd]))  # fresh, like the socket's
        return copy

    return query


def down(cmd: str) -> dict[str, Any]:
    raise DaemonUnreachable("/run/sstpd/control.sock: no such socket")


def req(
    path: str, method: str = "GET", query: Callable[[str], dict[str, Any]] | None = None
) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method}
    wsgiref.util.setup_testing_defaults(environ)
    status, headers, body = render(environ, query or fake(), NOW)
    return status, dict(headers), body


def test_healthz() -> None:
    assert req("/healthz")[0::2] == ("200 OK", b"ok\n")
    draining = fake({"health": {"ok": True, "status": "draining", "accepting": False}})
    assert req("/healthz", query=draining)[0::2] == ("503 Service Unavailable", b"draining\n")
    status, headers, body = req("/healthz", query=down)
    assert status.startswith("503") and body.startswith(b"down: ")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_metrics_parse_with_the_prometheus_parser() -> None:
    status, headers, body = req("/metrics")
    assert status == "200 OK"
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    fam = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert fam["sstpd_up"].samples[0].value == 1
    assert fam["sstpd_sessions"].samples[0].value == 1
    hs = {s.labels["outcome"]: s.value for s in fam["sstpd_handshakes"].samples}
    assert set(hs) == set(OUTCOMES) and hs["opened"] == 4
    assert fam["sstpd_auth_failures"].samples[0].value == 2
    assert fam["sstpd_crypto_binding_failures"].samples[0].value == 2
    by_dir = {s.labels["direction"]: s.value for s in fam["sstpd_bytes"].samples}
    assert by_dir == {"from_clients": 123456, "to_clients": 654321}
    hist = fam["sstpd_handshake_duration_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets["0.025"] == 1 and buckets["0.25"] == 2 and buckets["0.5"] == 3
    assert buckets["5.0"] == 3 and buckets["10.0"] == 4 and buckets["+Inf"] == 4
    rest = {s.name: s.value for s in hist.samples if not s.name.endswith("_bucket")}
    assert rest["sstpd_handshake_duration_seconds_count"] == 4
    assert rest["sstpd_handshake_duration_seconds_sum"] == pytest.approx(7.52)


def test_metrics_when_the_daemon_is_down() -> None:
    status, _, body = req("/metrics", query=down)
    assert status == "200 OK"
    fam = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert list(fam) == ["sstpd_up"] and fam["sstpd_up"].samples[0].value == 0


def test_label_values_are_escaped() -> None:
    text = render_metrics(StatsRecord.from_json(stats(version='1"\\\n')))
    assert 'sstpd_info{version="1\\"\\\\\\n"} 1' in text
    fam = {f.name: f for f in text_string_to_metric_families(text)}
    assert fam["sstpd_info"].samples[0].labels["version"] == '1"\\\n'


def test_api() -> None:
    status, headers, body = req("/api/sessions")
    assert status == "200 OK" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"sessions": [SESSION]}
    assert json.loads(req("/api/stats")[2])["rx_bytes"] == 123456
    status, _, body = req("/api/sessions", query=down)
    assert status.startswith("503") and "no such socket" in json.loads(body)["error"]


def test_page() -> None:
    status, headers, body = req("/")
    assert status == "200 OK"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in headers["Content-Security-Policy"]  # no script at all
    html = body.decode()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert '<tr data-session="7">' in html and "<b>alice</b>" in html
    assert "192.0.2.10:50123" in html and "10.77.0.2" in html
    assert "2.0 KiB" in html and "4.0 KiB" in html and "TLSv1.3" in html
    assert "1:01:40" in html  # uptime
    assert "accepting sessions" in html and "Sessions (1)" in html


def test_page_shows_the_ipv6_prefix_under_the_address() -> None:
    row = SESSION | {"ipv6_prefix": "2001:db8:77:5::/64"}
    _, _, body = req("/", query=fake({"sessions": {"ok": True, "sessions": [row]}}))
    assert '10.77.0.2<div class="sub">2001:db8:77:5::/64</div>' in body.decode()
    _, _, body = req("/")
    assert "2001:db8" not in body.decode()


def test_page_escapes_everything() -> None:
    evil = dict(SESSION, user='<script>alert("x")</script>', tls_cipher="a&b", peer="<i>")
    query = fake({"sessions": {"ok": True, "sessions": [evil]}})
    html = req("/", query=query)[2].decode()
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)" in html
    assert "a&amp;b" in html and "&lt;i&gt;" in html and "<i>" not in html


def test_page_without_sessions_and_when_down() -> None:
    html = req("/", query=fake({"sessions": {"ok": True, "sessions": []}}))[2].decode()
    assert "No open sessions." in html
    status, _, body = req("/", query=down)
    assert status.startswith("503") and b"daemon unreachable" in body


def test_methods_and_unknown_paths() -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, _ = req("/", method)
        assert status == "405 Method Not Allowed" and headers["Allow"] == "GET, HEAD"
    status, headers, body = req("/healthz", "HEAD")
    assert (status, body, headers["Content-Length"]) == ("200 OK", b"", "3")
    assert req("/nope")[0] == "404 Not Found"
    assert req("/index.html")[0] == "200 OK"


def test_create_app_with_an_unreachable_daemon(tmp_path: Any) -> None:
    app = create_app(str(tmp_path / "missing.sock"), timeout=1, title="test")
    environ: dict[str, Any] = {"PATH_INFO": "/healthz"}
    wsgiref.util.setup_testing_defaults(environ)
    seen: list[str] = []
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    assert seen == ["503 Service Unavailable"] and b"no such socket" in body


def test_socket_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from sstpd.status.app import socket_path

    monkeypatch.setenv("SSTPD_CONTROL_SOCKET", "/x/y.sock")
    assert socket_path() == "/x/y.sock"
    monkeypatch.delenv("SSTPD_CONTROL_SOCKET")
    cfg = tmp_path / "sstpd.toml"
    cfg.write_text('[server]\ncontrol_socket = "/run/other/ctl.sock"\n')
    monkeypatch.setenv("SSTPD_CONFIG", str(cfg))
    assert socket_path() == "/run/other/ctl.sock"


def test_metrics_and_stats_text_show_the_abuse_counters() -> None:
    from sstpd.ctl import stats_text

    st = stats(
        status="pool_full",
        accepting=False,
        warnings=["address pool full (253/253)"],
        internal_errors=0,
        authenticated=1,
        pending=7,
        pending_sources=2,
        pending_total_limit=1000,
        pending_per_source_limit=64,
        auth_delayed=5,
        auth_blocks=1,
        auth_blocked={"sources": 1, "users": 0},
        accept_errors=3,
        open_files_limit=65536,
    )
    text = render_metrics(StatsRecord.from_json(st))
    for line in (
        "sstpd_pending_connections 7",
        "sstpd_pending_sources 2",
        "sstpd_auth_blocks_total 1",
        'sstpd_auth_blocked{kind="sources"} 1',
        "sstpd_accept_errors_total 3",
        "sstpd_open_files_limit 65536",
        'sstpd_handshakes_total{outcome="limit_per_source"}',
        'sstpd_handshakes_total{outcome="timeout_tls"}',
    ):
        assert line in text, line
    out = stats_text(StatsRecord.from_json(st))
    assert "pool_full (address pool full: new logins fail)" in out
    assert "warning: address pool full (253/253)" in out
    assert "7 not authenticated from 2 sources (limits 1000 total, 64 per source)" in out
    assert "5 failures delayed, 1 blocks; blocked now: 1 sources, 0 users" in out


# name as the parser reports it (counters without _total) -> (type, label names)
FAMILIES = {
    "sstpd_up": ("gauge", set()),
    "sstpd_info": ("gauge", {"version"}),
    "sstpd_accepting": ("gauge", set()),
    "sstpd_draining": ("gauge", set()),
    "sstpd_sessions": ("gauge", set()),
    "sstpd_handshakes_in_progress": ("gauge", set()),
    "sstpd_max_sessions": ("gauge", set()),
    "sstpd_pending_connections": ("gauge", set()),
    "sstpd_pending_sources": ("gauge", set()),
    "sstpd_pending_limit": ("gauge", set()),
    "sstpd_pending_per_source_limit": ("gauge", set()),
    "sstpd_auth_delayed": ("counter", set()),
    "sstpd_auth_blocks": ("counter", set()),
    "sstpd_auth_blocked": ("gauge", {"kind"}),
    "sstpd_accept_errors": ("counter", set()),
    "sstpd_internal_errors": ("counter", set()),
    "sstpd_open_files_limit": ("gauge", set()),
    "sstpd_pool_addresses": ("gauge", set()),
    "sstpd_pool_addresses_in_use": ("gauge", set()),
    "sstpd_uptime_seconds": ("gauge", set()),
    "sstpd_start_time_seconds": ("gauge", set()),
    "sstpd_handshakes": ("counter", {"outcome"}),
    "sstpd_auth_failures": ("counter", set()),
    "sstpd_crypto_binding_failures": ("counter", set()),
    "sstpd_bytes": ("counter", {"direction"}),
    "sstpd_packets": ("counter", {"direction"}),
    "sstpd_ipv6_bytes": ("counter", {"direction"}),
    "sstpd_ipv6_packets": ("counter", {"direction"}),
    "sstpd_dropped_packets": ("counter", {"reason"}),
    "sstpd_handshake_duration_seconds": ("histogram", {"le"}),
    "sstpd_reloads": ("counter", {"result"}),
    "sstpd_certificate_expiry_timestamp_seconds": ("gauge", set()),
    "sstpd_certificate_renewals": ("counter", {"result"}),
}

ABUSE = {
    "authenticated": 1,
    "pending": 7,
    "pending_sources": 2,
    "pending_total_limit": 1000,
    "pending_per_source_limit": 64,
    "auth_delayed": 5,
    "auth_blocks": 1,
    "auth_blocked": {"sources": 1, "users": 0},
    "accept_errors": 3,
    "internal_errors": 2,
    "open_files_limit": 65536,
}


def test_every_documented_family_with_its_type_labels_and_values() -> None:
    """The README's /metrics list, as prometheus_client's parser reads the exposition."""
    answer = stats(**ABUSE, certificate_not_after=1.9e9, acme_renewals=2)
    text = render_metrics(StatsRecord.from_json(answer))
    fam = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(fam) == set(FAMILIES)
    for name, (kind, labels) in FAMILIES.items():
        f = fam[name]
        assert f.type == kind, name
        assert f.samples, name
        for s in f.samples:
            bucket = s.name.endswith("_bucket")  # _sum and _count carry no le
            assert set(s.labels) == (labels if kind != "histogram" or bucket else set()), s
            if kind == "counter":
                assert s.name == f"{name}_total", s
    value = {n: [s.value for s in f.samples] for n, f in fam.items()}
    assert value["sstpd_pending_connections"] == [7]
    assert value["sstpd_internal_errors"] == [2]
    assert value["sstpd_open_files_limit"] == [65536]
    assert value["sstpd_start_time_seconds"] == [NOW - 3700]  # exact, not rounded
    assert value["sstpd_certificate_expiry_timestamp_seconds"] == [1.9e9]
    blocked = {s.labels["kind"]: s.value for s in fam["sstpd_auth_blocked"].samples}
    assert blocked == {"sources": 1, "users": 0}
    dropped = {s.labels["reason"]: s.value for s in fam["sstpd_dropped_packets"].samples}
    assert dropped == {"spoofed": 1, "queue_full": 0, "no_route": 3, "dhcp": 4} | {
        r: 0 for r in ("spoofed6", "invalid6", "nd_invalid", "rs_rate_limited")
    }
    reloads = {s.labels["result"]: s.value for s in fam["sstpd_reloads"].samples}
    assert reloads == {"applied": 1, "rejected": 0}
    renewals = {s.labels["result"]: s.value for s in fam["sstpd_certificate_renewals"].samples}
    assert renewals == {"ok": 2, "failed": 0}
    assert {s.labels["version"] for s in fam["sstpd_info"].samples} == {"0.1.0"}


def test_an_older_daemon_without_the_abuse_counters() -> None:
    """``stats`` from before the pre-authentication budgets: those families are left out."""
    fam = {
        f.name
        for f in text_string_to_metric_families(render_metrics(StatsRecord.from_json(stats())))
    }
    absent = {"sstpd_pending_connections", "sstpd_auth_blocked", "sstpd_internal_errors"}
    assert not fam & absent and "sstpd_sessions" in fam
    assert "sstpd_certificate_expiry_timestamp_seconds" not in fam


def test_metrics_and_stats_text_count_ipv6() -> None:
    from sstpd.ctl import stats_text

    answer = stats(
        rx6_bytes=4000,
        rx6_packets=40,
        tx6_bytes=5000,
        tx6_packets=50,
        dropped_spoofed6=3,
        dropped_invalid6=4,
        dropped_nd_invalid=5,
        nd_rate_limited=6,
        pool6_size=255,
        pool6_in_use=2,
    )
    st = StatsRecord.from_json(answer)
    fam = {f.name: f for f in text_string_to_metric_families(render_metrics(st))}
    v6 = {s.labels["direction"]: s.value for s in fam["sstpd_ipv6_packets"].samples}
    assert v6 == {"from_clients": 40, "to_clients": 50}
    v6 = {s.labels["direction"]: s.value for s in fam["sstpd_ipv6_bytes"].samples}
    assert v6 == {"from_clients": 4000, "to_clients": 5000}
    drops = {s.labels["reason"]: s.value for s in fam["sstpd_dropped_packets"].samples}
    assert drops["spoofed6"] == 3 and drops["invalid6"] == 4
    assert drops["nd_invalid"] == 5 and drops["rs_rate_limited"] == 6
    assert fam["sstpd_pool6_prefixes"].samples[0].value == 255
    assert fam["sstpd_pool6_prefixes_in_use"].samples[0].value == 2
    text = stats_text(st)
    assert "prefixes 2/255" in text and "spoofed 3, invalid 4, invalid ND 5" in text
    # an IPv4-only daemon (or an older one without the keys): no pool gauges, zeros
    v4 = StatsRecord.from_json(stats())
    fam = {f.name: f for f in text_string_to_metric_families(render_metrics(v4))}
    assert "sstpd_pool6_prefixes" not in fam
    assert {s.value for s in fam["sstpd_ipv6_packets"].samples} == {0}
    assert "ipv6" not in stats_text(v4)
