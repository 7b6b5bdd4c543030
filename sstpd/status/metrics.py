"""The ``stats`` answer of the daemon in the Prometheus text exposition format 0.0.4."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _value(v: float | int | bool) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _label(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, value: float | int | bool, labels: dict[str, object] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {_value(value)}"
    return f"{name} {_value(value)}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[str]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        self.lines.extend(samples)

    def gauge(self, name: str, help_text: str, value: float | int | bool) -> None:
        self.family(name, "gauge", help_text, [_sample(name, value)])

    def counter(self, name: str, help_text: str, value: int) -> None:
        self.family(name, "counter", help_text, [_sample(name, value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_metrics(stats: dict[str, Any] | None) -> str:
    """All metrics; with ``stats`` None (daemon unreachable) only ``sstpd_up 0``."""
    w = _Writer()
    w.gauge("sstpd_up", "1 if the daemon answered on its control socket.", stats is not None)
    if stats is None:
        return w.text()
    w.family(
        "sstpd_info",
        "gauge",
        "Version of the running daemon.",
        [_sample("sstpd_info", 1, {"version": stats.get("version", "")})],
    )
    w.gauge("sstpd_accepting", "1 while new sessions are accepted.", bool(stats["accepting"]))
    w.gauge("sstpd_draining", "1 while the daemon is draining.", bool(stats["draining"]))
    w.gauge("sstpd_sessions", "Open sessions (tunnel up).", stats["sessions"])
    w.gauge(
        "sstpd_handshakes_in_progress",
        "Connections still in TLS/SSTP/PPP negotiation.",
        stats["handshakes_in_progress"],
    )
    w.gauge("sstpd_max_sessions", "Configured server.max_sessions.", stats["max_sessions"])
    if "pending" in stats:  # daemons before the pre-authentication budgets lack these
        w.gauge(
            "sstpd_pending_connections",
            "Connections not authenticated yet (TCP, TLS, HTTP, PPP before login).",
            stats["pending"],
        )
        w.gauge(
            "sstpd_pending_sources",
            "Source addresses with connections not authenticated yet.",
            stats["pending_sources"],
        )
        w.gauge(
            "sstpd_pending_limit",
            "Configured limits.pending_total.",
            stats["pending_total_limit"],
        )
        w.gauge(
            "sstpd_pending_per_source_limit",
            "Configured limits.pending_per_source.",
            stats["pending_per_source_limit"],
        )
        w.counter(
            "sstpd_auth_delayed_total",
            "Failed logins whose answer was held back (brute-force throttle).",
            stats["auth_delayed"],
        )
        w.counter(
            "sstpd_auth_blocks_total",
            "Blocks started for too many failed logins (source or user).",
            stats["auth_blocks"],
        )
        w.family(
            "sstpd_auth_blocked",
            "gauge",
            "Source addresses and user names blocked now for failed logins.",
            [
                _sample("sstpd_auth_blocked", n, {"kind": kind})
                for kind, n in stats["auth_blocked"].items()
            ],
        )
        w.counter(
            "sstpd_accept_errors_total",
            "accept() failures (EMFILE: no file descriptor left).",
            stats["accept_errors"],
        )
        w.counter(
            "sstpd_internal_errors_total",
            "Sessions ended by an unexpected exception (a bug; see the log).",
            stats["internal_errors"],
        )
        w.gauge("sstpd_open_files_limit", "RLIMIT_NOFILE in force.", stats["open_files_limit"])
    w.gauge("sstpd_pool_addresses", "Client addresses in the pool.", stats["pool_size"])
    w.gauge("sstpd_pool_addresses_in_use", "Client addresses handed out.", stats["pool_in_use"])
    if stats.get("pool6_size"):
        w.gauge("sstpd_pool6_prefixes", "Client /64s in the IPv6 pool.", stats["pool6_size"])
        w.gauge("sstpd_pool6_prefixes_in_use", "Client /64s handed out.", stats["pool6_in_use"])
    w.gauge("sstpd_uptime_seconds", "Seconds since the daemon started.", stats["uptime"])
    w.gauge("sstpd_start_time_seconds", "Unix time the daemon started.", stats["started_at"])
    w.family(
        "sstpd_handshakes_total",
        "counter",
        "Finished handshakes (connections) by outcome.",
        [
            _sample("sstpd_handshakes_total", n, {"outcome": outcome})
            for outcome, n in stats["handshakes"].items()
        ],
    )
    w.counter(
        "sstpd_auth_failures_total",
        "Rejected PAP/MS-CHAPv2 attempts.",
        stats["auth_failures"],
    )
    w.counter(
        "sstpd_crypto_binding_failures_total",
        "Call Connected messages whose crypto binding did not verify.",
        stats["crypto_binding_failures"],
    )
    for unit, rx, tx in (
        ("bytes", stats["rx_bytes"], stats["tx_bytes"]),
        ("packets", stats["rx_packets"], stats["tx_packets"]),
    ):
        name = f"sstpd_{unit}_total"
        w.family(
            name,
            "counter",
            f"IP {unit} (IPv4 and IPv6) through the tunnels, closed sessions included.",
            [
                _sample(name, rx, {"direction": "from_clients"}),
                _sample(name, tx, {"direction": "to_clients"}),
            ],
        )
    for unit in ("bytes", "packets"):
        name = f"sstpd_ipv6_{unit}_total"
        w.family(
            name,
            "counter",
            f"The IPv6 part of sstpd_{unit}_total.",
            [
                _sample(name, stats.get(f"rx6_{unit}", 0), {"direction": "from_clients"}),
                _sample(name, stats.get(f"tx6_{unit}", 0), {"direction": "to_clients"}),
            ],
        )
    w.family(
        "sstpd_dropped_packets_total",
        "counter",
        "Packets dropped: spoofed source, client output queue full, no session for the "
        "destination, DHCP that is not the session's own DHCPINFORM; IPv6: spoofed source, "
        "invalid packet, invalid Neighbor Discovery, Router Solicitation beyond the rate "
        "limit.",
        [
            _sample("sstpd_dropped_packets_total", stats["dropped_spoofed"], {"reason": "spoofed"}),
            _sample(
                "sstpd_dropped_packets_total", stats["dropped_overflow"], {"reason": "queue_full"}
            ),
            _sample("sstpd_dropped_packets_total", stats["tun_no_route"], {"reason": "no_route"}),
            _sample("sstpd_dropped_packets_total", stats["dropped_dhcp"], {"reason": "dhcp"}),
            *[
                _sample("sstpd_dropped_packets_total", stats.get(key, 0), {"reason": reason})
                for key, reason in (
                    ("dropped_spoofed6", "spoofed6"),
                    ("dropped_invalid6", "invalid6"),
                    ("dropped_nd_invalid", "nd_invalid"),
                    ("nd_rate_limited", "rs_rate_limited"),
                )
            ],
        ],
    )
    lat = stats["handshake_latency"]
    name = "sstpd_handshake_duration_seconds"
    samples = [
        _sample(f"{name}_bucket", count, {"le": bound if bound == "+Inf" else _value(bound)})
        for bound, count in lat["buckets"]
    ]
    samples += [_sample(f"{name}_sum", float(lat["sum"])), _sample(f"{name}_count", lat["count"])]
    w.family(name, "histogram", "Time from TCP accept to the tunnel being open.", samples)
    w.family(
        "sstpd_reloads_total",
        "counter",
        "Configuration reloads by result.",
        [
            _sample("sstpd_reloads_total", stats["reloads"], {"result": "applied"}),
            _sample("sstpd_reloads_total", stats["reload_failures"], {"result": "rejected"}),
        ],
    )
    if stats.get("certificate_not_after") is not None:
        w.gauge(
            "sstpd_certificate_expiry_timestamp_seconds",
            "Unix time the served TLS certificate expires (notAfter).",
            float(stats["certificate_not_after"]),
        )
    w.family(
        "sstpd_certificate_renewals_total",
        "counter",
        "ACME certificate orders by result.",
        [
            _sample(
                "sstpd_certificate_renewals_total",
                int(stats.get("acme_renewals", 0)),
                {"result": "ok"},
            ),
            _sample(
                "sstpd_certificate_renewals_total",
                int(stats.get("acme_renewal_failures", 0)),
                {"result": "failed"},
            ),
        ],
    )
    return w.text()
