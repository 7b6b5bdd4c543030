"""/metrics: the daemon's ``stats`` answer in the Prometheus text format 0.0.4.

``prometheus-client`` writes the exposition (escaping, number formatting, the ``_total``,
``_bucket``, ``_sum`` and ``_count`` samples); this module only says which families a
``StatsRecord`` makes. Every scrape asks the daemon once and builds a fresh registry with
one collector over that record, so the numbers are the daemon's, never cached here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from sstpd.records import StatsRecord

__all__ = ["CONTENT_TYPE", "StatsCollector", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes


def _le(bound: float) -> str:
    """A bucket's ``le`` label: ``0.025``, ``1.0``, ``+Inf`` (the label is compared as text)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def _labelled(
    family: type[GaugeMetricFamily | CounterMetricFamily],
    name: str,
    help_text: str,
    label: str,
    values: dict[str, float],
) -> GaugeMetricFamily | CounterMetricFamily:
    metric = family(name, help_text, labels=[label])
    for key, value in values.items():
        metric.add_metric([key], value)
    return metric


class StatsCollector:
    """The families of one ``stats`` answer; ``None`` (daemon unreachable): ``sstpd_up 0``."""

    def __init__(self, stats: StatsRecord | None) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        st = self.stats
        yield _gauge("sstpd_up", "1 if the daemon answered on its control socket.", st is not None)
        if st is None:
            return
        yield _labelled(
            GaugeMetricFamily,
            "sstpd_info",
            "Version of the running daemon.",
            "version",
            {st.version: 1},
        )
        yield _gauge("sstpd_accepting", "1 while new sessions are accepted.", st.health.accepting)
        yield _gauge("sstpd_draining", "1 while the daemon is draining.", st.health.draining)
        yield _gauge("sstpd_sessions", "Open sessions (tunnel up).", st.sessions)
        yield _gauge(
            "sstpd_handshakes_in_progress",
            "Connections still in TLS/SSTP/PPP negotiation.",
            st.handshakes_in_progress,
        )
        yield _gauge("sstpd_max_sessions", "Configured server.max_sessions.", st.max_sessions)
        if st.workers > 1:  # the supervisor's merged answer
            yield _gauge(
                "sstpd_workers", "Worker processes running (server.workers).", st.workers_running
            )
            yield _counter(
                "sstpd_worker_restarts",
                "Worker processes restarted after they died.",
                st.worker_restarts,
            )
        yield from self._admission(st)
        yield _gauge("sstpd_pool_addresses", "Client addresses in the pool.", st.pool_size)
        yield _gauge("sstpd_pool_addresses_in_use", "Client addresses handed out.", st.pool_in_use)
        if st.pool6_size:  # tunnel.ipv6_pool set
            yield _gauge("sstpd_pool6_prefixes", "Client /64s in the IPv6 pool.", st.pool6_size)
            yield _gauge("sstpd_pool6_prefixes_in_use", "Client /64s handed out.", st.pool6_in_use)
        yield _gauge("sstpd_uptime_seconds", "Seconds since the daemon started.", st.uptime)
        yield _gauge("sstpd_start_time_seconds", "Unix time the daemon started.", st.started_at)
        yield _labelled(
            CounterMetricFamily,
            "sstpd_handshakes_total",
            "Finished handshakes (connections) by outcome.",
            "outcome",
            dict(st.handshakes),
        )
        yield _counter(
            "sstpd_auth_failures_total", "Rejected PAP/MS-CHAPv2 attempts.", st.auth_failures
        )
        yield _counter(
            "sstpd_crypto_binding_failures_total",
            "Call Connected messages whose crypto binding did not verify.",
            st.crypto_binding_failures,
        )
        for unit, rx, tx in (
            ("bytes", st.rx_bytes, st.tx_bytes),
            ("packets", st.rx_packets, st.tx_packets),
        ):
            yield _labelled(
                CounterMetricFamily,
                f"sstpd_{unit}_total",
                f"IP {unit} (IPv4 and IPv6) through the tunnels, closed sessions included.",
                "direction",
                {"from_clients": rx, "to_clients": tx},
            )
        for unit, rx, tx in (
            ("bytes", st.rx6_bytes, st.tx6_bytes),
            ("packets", st.rx6_packets, st.tx6_packets),
        ):
            yield _labelled(
                CounterMetricFamily,
                f"sstpd_ipv6_{unit}_total",
                f"The IPv6 part of sstpd_{unit}_total.",
                "direction",
                {"from_clients": rx, "to_clients": tx},
            )
        yield _labelled(
            CounterMetricFamily,
            "sstpd_dropped_packets_total",
            "Packets dropped: spoofed source, client output queue full, no session for the "
            "destination, DHCP that is not the session's own DHCPINFORM; IPv6: spoofed source, "
            "invalid packet, invalid Neighbor Discovery, Router Solicitation beyond the rate "
            "limit.",
            "reason",
            {
                "spoofed": st.dropped_spoofed,
                "queue_full": st.dropped_overflow,
                "no_route": st.tun_no_route,
                "dhcp": st.dropped_dhcp,
                "spoofed6": st.dropped_spoofed6,
                "invalid6": st.dropped_invalid6,
                "nd_invalid": st.dropped_nd_invalid,
                "rs_rate_limited": st.nd_rate_limited,
            },
        )
        lat = st.handshake_latency
        buckets = [(_le(bound), float(n)) for bound, n in lat.buckets]
        yield HistogramMetricFamily(
            "sstpd_handshake_duration_seconds",
            "Time from TCP accept to the tunnel being open.",
            buckets=buckets or [("+Inf", float(lat.count))],
            sum_value=lat.sum,
        )
        yield _labelled(
            CounterMetricFamily,
            "sstpd_reloads_total",
            "Configuration reloads by result.",
            "result",
            {"applied": st.reloads, "rejected": st.reload_failures},
        )
        if st.certificate_not_after is not None:
            yield _gauge(
                "sstpd_certificate_expiry_timestamp_seconds",
                "Unix time the served TLS certificate expires (notAfter).",
                st.certificate_not_after,
            )
        yield _labelled(
            CounterMetricFamily,
            "sstpd_certificate_renewals_total",
            "ACME certificate orders by result.",
            "result",
            {"ok": st.acme_renewals, "failed": st.acme_renewal_failures},
        )

    @staticmethod
    def _admission(st: StatsRecord) -> Iterator[Metric]:
        ad = st.admission
        if ad is None:  # daemons before the pre-authentication budgets lack these
            return
        yield _gauge(
            "sstpd_pending_connections",
            "Connections not authenticated yet (TCP, TLS, HTTP, PPP before login).",
            ad.pending,
        )
        yield _gauge(
            "sstpd_pending_sources",
            "Source addresses with connections not authenticated yet.",
            ad.pending_sources,
        )
        yield _gauge(
            "sstpd_pending_limit", "Configured limits.pending_total.", ad.pending_total_limit
        )
        yield _gauge(
            "sstpd_pending_per_source_limit",
            "Configured limits.pending_per_source.",
            ad.pending_per_source_limit,
        )
        yield _counter(
            "sstpd_auth_delayed_total",
            "Failed logins whose answer was held back (brute-force throttle).",
            ad.auth_delayed,
        )
        yield _counter(
            "sstpd_auth_blocks_total",
            "Blocks started for too many failed logins (source or user).",
            ad.auth_blocks,
        )
        yield _labelled(
            GaugeMetricFamily,
            "sstpd_auth_blocked",
            "Source addresses and user names blocked now for failed logins.",
            "kind",
            dict(ad.auth_blocked),
        )
        yield _counter(
            "sstpd_accept_errors_total",
            "accept() failures (EMFILE: no file descriptor left).",
            ad.accept_errors,
        )
        yield _counter(
            "sstpd_internal_errors_total",
            "Sessions ended by an unexpected exception (a bug; see the log).",
            ad.internal_errors,
        )
        yield _gauge("sstpd_open_files_limit", "RLIMIT_NOFILE in force.", ad.open_files_limit)


def render_metrics(stats: StatsRecord | None) -> str:
    """All metrics; with ``stats`` None (daemon unreachable) only ``sstpd_up 0``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    return generate_latest(registry).decode()
