"""``sstpctl`` (also ``sstpd ctl``): the daemon's control socket from the command line.

    sstpctl sessions | stats | health | reload | drain | undrain
    sstpctl kick alice          # every session of user alice
    sstpctl kick 12             # session 12 (--user 12 for a user named "12")
    sstpctl cert                # served certificate, ACME state (next renewal, last error)
    sstpctl cert renew          # ACME renewal now; waits for the result (--wait S)

Tables by default, the daemon's JSON answer with ``--json``. Exit codes: 0 done, 1 the
daemon refused the command or cannot be reached (and ``health`` when the daemon does not
accept new sessions), 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from sstpd import control
from sstpd.display import format_bytes, format_duration
from sstpd.records import (
    CertRecord,
    DrainRecord,
    HealthRecord,
    KickRecord,
    RecordError,
    ReloadRecord,
    RenewRecord,
    SessionRecord,
    StatsRecord,
    sessions_from_json,
)

__all__ = ["cert_text", "drain_text", "main", "reload_text", "sessions_table", "stats_text"]

ENV_SOCKET = "SSTPD_CONTROL_SOCKET"


def main(argv: Sequence[str] | None = None, prog: str = "sstpctl") -> int:
    args = _parser(prog).parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        path = _socket(args)
        req: dict[str, Any] = {}
        if args.command == "kick":
            req = _kick_target(args.target, args.user)
        if args.command == "cert" and args.action == "renew":
            answer = _renew(path, args.timeout, args.wait)
        else:
            answer = control.request(path, args.command, timeout=args.timeout, **req)
    except control.ControlError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # an unreadable --config
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except RecordError as exc:  # cert renew polls: a daemon of another version
        print(f"{prog}: {args.command}: unexpected answer: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    elif not answer["ok"]:
        what = {"reload": "reload rejected", "cert": "cert renew"}.get(args.command, args.command)
        print(f"{prog}: {what}: {answer.get('error', 'failed')}", file=sys.stderr)
    else:
        try:
            print(_render(args.command, answer))
        except RecordError as exc:  # a daemon of another version, or not sstpd
            print(f"{prog}: {args.command}: unexpected answer: {exc}", file=sys.stderr)
            return 1
    if not answer["ok"]:
        return 1
    if args.command == "health":
        try:
            return 0 if HealthRecord.from_json(answer).accepting else 1
        except RecordError:
            return 1
    return 0


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Control a running sstpd.")
    p.add_argument(
        "--socket",
        metavar="PATH",
        help=f"control socket (default: ${ENV_SOCKET}, else server.control_socket of "
        f"--config or /etc/sstpd/sstpd.toml, else {control.DEFAULT_SOCKET})",
    )
    p.add_argument("--config", metavar="FILE", help="take the socket path from this config")
    p.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("sessions", help="list the open sessions")
    sub.add_parser("stats", help="counters since start (closed sessions included)")
    sub.add_parser("health", help="ok / draining / full / stopping (exit 1 unless ok)")
    k = sub.add_parser("kick", help="disconnect a session (by id) or all sessions of a user")
    k.add_argument("target", metavar="USER|SESSION_ID")
    k.add_argument("--user", action="store_true", help="TARGET is a user name even if numeric")
    sub.add_parser("reload", help="re-read config, certificate, key and users file (= SIGHUP)")
    sub.add_parser("drain", help="refuse new sessions; existing ones continue")
    sub.add_parser("undrain", help="accept new sessions again")
    c = sub.add_parser("cert", help="the served certificate and ACME state; 'renew' renews now")
    c.add_argument("action", nargs="?", choices=["renew"], help="force an ACME renewal")
    c.add_argument(
        "--wait", type=float, default=300.0, metavar="S", help="renew: seconds to wait (300)"
    )
    return p


def _renew(path: str, timeout: float, wait: float) -> dict[str, Any]:
    """Start a renewal, then poll ``cert`` until that attempt has finished. The answer is
    the last ``cert`` answer, with ``renewed`` (this command's, not the daemon's) or, when
    the attempt failed, ``ok`` false and its error."""
    before = _cert(control.request(path, "cert", timeout=timeout))
    if before is None or before.acme is None:
        return {"ok": False, "error": "ACME is not configured (no [acme] names)"}
    started = control.request(path, "renew", timeout=timeout)
    if not started["ok"]:
        return started
    # not started: one was in progress already, and its result is the one to wait for
    ours = RenewRecord.from_json(started).started  # another version: RecordError
    last = before.acme.last_attempt
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = control.request(path, "cert", timeout=timeout)
        acme = rec.acme if (rec := _cert(now)) is not None else None
        if acme is None or acme.in_progress:
            continue
        if acme.last_attempt != last or not ours:
            if acme.last_error:
                return {**now, "ok": False, "error": acme.last_error}
            return {**now, "renewed": True}
    return {"ok": False, "error": f"no result within {wait:g} s (still running)"}


def _cert(answer: dict[str, Any]) -> CertRecord | None:
    """A ``cert`` answer's record; None when the daemon refused (RecordError: not sstpd,
    or another version)."""
    return CertRecord.from_json(answer) if answer["ok"] else None


def _socket(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    env = os.environ.get(ENV_SOCKET)
    if env:
        return env
    return control.default_socket_path(args.config)


def _kick_target(target: str, as_user: bool) -> dict[str, Any]:
    if not as_user and target.isdigit():
        return {"id": int(target)}
    return {"user": target}


# ---------------------------------------------------------------------------------------
# text output


def _render(command: str, answer: dict[str, Any]) -> str:
    if command == "sessions":
        return sessions_table(sessions_from_json(answer))
    if command == "stats":
        return stats_text(StatsRecord.from_json(answer))
    if command == "cert":
        return cert_text(CertRecord.from_json(answer), renewed=answer.get("renewed") is True)
    if command == "kick":
        ids = KickRecord.from_json(answer).kicked
        return f"disconnecting session{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
    if command == "reload":
        return reload_text(ReloadRecord.from_json(answer))
    if command in ("drain", "undrain"):
        return drain_text(DrainRecord.from_json(answer))
    return _health_text(HealthRecord.from_json(answer))


def drain_text(rec: DrainRecord) -> str:
    """The health after ``drain``/``undrain``, and the sessions that continue."""
    n = rec.sessions
    if n is None:  # an older daemon
        return _health_text(rec.health)
    continues = "1 open session continues" if n == 1 else f"{n} open sessions continue"
    return f"{_health_text(rec.health)}\n{continues}"


def _health_text(health: HealthRecord) -> str:
    words = {
        "ok": "accepting new sessions",
        "draining": "draining: refusing new sessions",
        "full": "full: max_sessions reached",
        "pool_full": "address pool full: new logins fail",
        "stopping": "shutting down",
    }
    status = health.status
    text = f"{status} ({words.get(status, status)})"
    for warning in health.warnings:
        text += f"\nwarning: {warning}"
    return text


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def sessions_table(sessions: list[SessionRecord]) -> str:
    if not sessions:
        return "no sessions"
    ipv6 = any(s.ipv6_prefix for s in sessions)
    header = ["ID", "USER", "PEER", "ADDRESS", *(["IPV6 PREFIX"] if ipv6 else []), "CONNECTED"]
    header += ["UP", "RX PKTS", "RX", "TX PKTS", "TX", "AUTH", "TLS", "CIPHER", "BINDING"]
    rows = []
    for s in sessions:
        binding = s.binding_hash
        if s.cert_hash:
            binding += f" {s.cert_hash[:12]}…"
        rows.append(
            [
                str(s.id),
                s.user,
                s.peer,
                s.address,
                *([s.ipv6_prefix or "-"] if ipv6 else []),
                _when(s.connected_since),
                format_duration(s.duration),
                str(s.rx_packets),
                format_bytes(s.rx_bytes),
                str(s.tx_packets),
                format_bytes(s.tx_bytes),
                s.auth_method,
                s.tls_version or "-",
                s.tls_cipher or "-",
                binding or "-",
            ]
        )
    if any(s.worker for s in sessions):  # server.workers > 1: who holds each session
        header.append("WORKER")
        for row, s in zip(rows, sessions, strict=True):
            row.append(str(s.worker))
    shift = 1 if ipv6 else 0
    return _table(header, rows, right={0, *(n + shift for n in (5, 6, 7, 8, 9))})


def _opt_when(epoch: float | None) -> str:
    return _when(epoch) if epoch else "-"


def reload_text(rec: ReloadRecord) -> str:
    lines = [
        f"reloaded: {rec.users} users, certificate sha256 {rec.cert_sha256 or '-'}",
        f"changed: {', '.join(rec.changed) or 'nothing'}",
    ]
    lines += [f"needs restart (not applied): {item}" for item in rec.needs_restart]
    return "\n".join(lines)


def cert_text(rec: CertRecord, *, renewed: bool = False) -> str:
    cert = rec.certificate
    lines: list[tuple[str, str]] = []
    if renewed:
        lines.append(("renewed", "new certificate installed"))
    if cert is None:
        lines.append(("certificate", "none (plain HTTP behind an offloader, or unreadable)"))
    else:
        lines += [
            ("certificate", rec.path),
            ("names", ", ".join(cert.names) or "-"),
            ("issuer", cert.issuer + (" (self-signed)" if cert.self_signed else "")),
            ("valid", f"{_when(cert.not_before)} to {_when(cert.not_after)}"),
            ("sha256", cert.sha256),
        ]
    for w in rec.workers:  # server.workers: what each worker serves
        if not w.running:
            lines.append((f"worker {w.worker}", "not running (restarting)"))
            continue
        lines.append(
            (
                f"worker {w.worker}",
                f"sha256 {w.sha256 or '-'}, "
                f"{w.challenge_handshakes} TLS-ALPN-01 validations answered",
            )
        )
    acme = rec.acme
    if acme is None:
        lines.append(("acme", "not configured"))
    else:
        state = "in progress" if acme.in_progress else "idle"
        lines += [
            ("acme", f"{acme.challenge} via {acme.directory} ({state})"),
            ("acme names", ", ".join(acme.names)),
            ("next renewal", _opt_when(acme.next_renewal)),
            *([("ca suggests", _opt_when(acme.ari_suggestion))] if acme.ari_suggestion else []),
            ("last attempt", _opt_when(acme.last_attempt)),
            ("last success", _opt_when(acme.last_success)),
            ("last error", acme.last_error or "-"),
            ("renewals", f"{acme.renewals} ({acme.renewal_failures} failed)"),
        ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def stats_text(st: StatsRecord) -> str:
    lat = st.handshake_latency
    mean = f", mean {lat.sum / lat.count:.3f} s" if lat.count else ""
    lines = [
        ("status", _health_text(st.health)),
        ("uptime", f"{format_duration(st.uptime)} (since {_when(st.started_at)})"),
        (
            "sessions",
            f"{st.sessions} open, {st.handshakes_in_progress} in handshake "
            f"(max {st.max_sessions}; pool {st.pool_in_use}/{st.pool_size})",
        ),
        ("handshakes", ", ".join(f"{k} {v}" for k, v in st.handshakes.items())),
        ("auth failures", str(st.auth_failures)),
    ]
    if st.workers > 1:
        per = ", ".join(f"w{k} {v}" for k, v in sorted(st.worker_sessions.items()))
        lines.append(
            (
                "workers",
                f"{st.workers_running} of {st.workers} running, {st.worker_restarts} restarts; "
                f"sessions {per}",
            )
        )
    ad = st.admission
    if ad is not None:
        blocked = ad.auth_blocked
        lines += [
            (
                "pending",
                f"{ad.pending} not authenticated from {ad.pending_sources} sources "
                f"(limits {ad.pending_total_limit} total, "
                f"{ad.pending_per_source_limit} per source)",
            ),
            (
                "throttle",
                f"{ad.auth_delayed} failures delayed, {ad.auth_blocks} blocks; blocked "
                f"now: {blocked.get('sources', 0)} sources, {blocked.get('users', 0)} users",
            ),
            (
                "errors",
                f"accept {ad.accept_errors}, internal {ad.internal_errors} "
                f"(open files limit {ad.open_files_limit})",
            ),
        ]
    lines += [
        ("binding failures", str(st.crypto_binding_failures)),
        ("from clients", f"{st.rx_packets} packets, {format_bytes(st.rx_bytes)}"),
        ("to clients", f"{st.tx_packets} packets, {format_bytes(st.tx_bytes)}"),
    ]
    if st.pool6_size:
        lines += [
            (
                "ipv6",
                f"from clients {st.rx6_packets} packets, {format_bytes(st.rx6_bytes)}; "
                f"to clients {st.tx6_packets} packets, {format_bytes(st.tx6_bytes)}; "
                f"prefixes {st.pool6_in_use}/{st.pool6_size}",
            ),
            (
                "ipv6 dropped",
                f"spoofed {st.dropped_spoofed6}, invalid {st.dropped_invalid6}, "
                f"invalid ND {st.dropped_nd_invalid}, RS rate-limited {st.nd_rate_limited}",
            ),
        ]
    lines += [
        (
            "dropped",
            f"spoofed {st.dropped_spoofed}, queue full {st.dropped_overflow}, "
            f"no route {st.tun_no_route}, DHCP {st.dropped_dhcp}",
        ),
        ("handshake time", f"{lat.count} handshakes{mean}"),
        ("reloads", f"{st.reloads} ({st.reload_failures} rejected)"),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
