"""The HTML status page: a summary and the sessions table. No script; every value escaped."""

from __future__ import annotations

import time
from html import escape

from sstpd.display import format_bytes, format_duration
from sstpd.records import SessionRecord, StatsRecord

REFRESH_SECONDS = 15

_CSS = """
:root { color-scheme: light; --fg: #1c2430; --muted: #5f6b7a; --line: #e3e8ef;
  --bg: #f6f8fb; --card: #fff; --ok: #137333; --okbg: #e6f4ea; --warn: #a35200;
  --warnbg: #fdf0e0; --bad: #b3261e; --badbg: #fbe9e7; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background: var(--card); border-bottom: 1px solid var(--line); }
.wrap { max-width: 1160px; margin: 0 auto; padding: 0 24px; }
header .wrap { display: flex; align-items: center; gap: 14px; height: 60px; }
h1 { font-size: 18px; margin: 0; font-weight: 650; }
h1 small { color: var(--muted); font-weight: 400; margin-left: 6px; }
h2 { font-size: 15px; margin: 28px 0 10px; font-weight: 650; }
.pill { border-radius: 999px; padding: 2px 10px; font-size: 12px; font-weight: 600; }
.pill.ok { color: var(--ok); background: var(--okbg); }
.pill.warn { color: var(--warn); background: var(--warnbg); }
.pill.bad { color: var(--bad); background: var(--badbg); }
.grow { flex: 1; }
.meta { color: var(--muted); font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
  gap: 12px; margin-top: 22px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px; }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 20px; font-weight: 650; margin-top: 2px; white-space: nowrap; }
.card .s { color: var(--muted); font-size: 12px; margin-top: 2px; }
.table { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 8px 10px; text-align: left; white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; border-bottom: 1px solid var(--line);
  background: #fafbfd; }
tbody tr + tr td { border-top: 1px solid var(--line); }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.sub { color: var(--muted); font-size: 12px; }
.empty { padding: 22px; color: var(--muted); text-align: center; }
.error { margin-top: 22px; background: var(--badbg); color: var(--bad); border-radius: 10px;
  padding: 14px 16px; }
footer { color: var(--muted); font-size: 12px; margin: 26px 0 30px; }
footer a { color: inherit; }
"""

_STATUS = {
    "ok": ("ok", "accepting sessions"),
    "draining": ("warn", "draining"),
    "full": ("warn", "full"),
    "stopping": ("bad", "shutting down"),
}


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _short(hex_digest: str) -> str:
    return f"{hex_digest[:12]}…" if len(hex_digest) > 12 else hex_digest


def _card(key: str, value: str, sub: str = "") -> str:
    s = f'<div class="s">{escape(sub)}</div>' if sub else ""
    return (
        f'<div class="card"><div class="k">{escape(key)}</div>'
        f'<div class="v">{escape(value)}</div>{s}</div>'
    )


def _session_row(s: SessionRecord) -> str:
    cells = [
        f'<td class="n">{s.id}</td>',
        f"<td><b>{escape(s.user)}</b></td>",
        f'<td class="mono">{escape(s.peer)}</td>',
        f'<td class="mono">{escape(s.address)}'
        + (f'<div class="sub">{escape(s.ipv6_prefix)}</div>' if s.ipv6_prefix else "")
        + "</td>",
        f"<td>{escape(_utc(s.connected_since))}"
        f'<div class="sub">up {escape(format_duration(s.duration))}</div></td>',
        f'<td class="n">{escape(format_bytes(s.rx_bytes))}'
        f'<div class="sub">{s.rx_packets} pkts</div></td>',
        f'<td class="n">{escape(format_bytes(s.tx_bytes))}'
        f'<div class="sub">{s.tx_packets} pkts</div></td>',
        f"<td>{escape(s.auth_method)}</td>",
        f"<td>{escape(s.tls_version or '-')}"
        f'<div class="sub">{escape(s.tls_cipher)}</div></td>',
        f"<td>{escape(s.binding_hash or '-')}"
        f'<div class="sub mono" title="{escape(s.cert_hash)}">'
        f"{escape(_short(s.cert_hash))}</div></td>",
    ]
    return f'<tr data-session="{s.id}">{"".join(cells)}</tr>'


def render_page(
    stats: StatsRecord | None,
    sessions: list[SessionRecord],
    *,
    now: float,
    title: str = "sstpd",
    error: str = "",
) -> str:
    """The whole page; ``stats`` None and ``error`` set when the daemon is unreachable."""
    if stats is None:
        pill = '<span class="pill bad">daemon unreachable</span>'
        body = f'<div class="error">{escape(error or "no answer")}</div>'
    else:
        status = stats.health.status
        kind, word = _STATUS.get(status, ("warn", status))
        pill = f'<span class="pill {kind}">{escape(word)}</span>'
        body = _summary(stats) + _sessions(sessions)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{escape(title)} status</title>
<style>{_CSS}</style>
</head>
<body>
<header><div class="wrap">
<h1>{escape(title)}<small>SSTP VPN</small></h1>{pill}<span class="grow"></span>
<span class="meta">updated {escape(_utc(now))}</span>
</div></header>
<main class="wrap">
{body}
<footer>Refreshes every {REFRESH_SECONDS} s &middot; <a href="metrics">metrics</a> &middot;
<a href="api/sessions">sessions as JSON</a> &middot; <a href="healthz">health</a> &middot;
<a href="profiles/">client profiles</a></footer>
</main>
</body>
</html>
"""


def _summary(st: StatsRecord) -> str:
    cards = [
        _card("Sessions", str(st.sessions), f"of {st.max_sessions} max"),
        _card(
            "Uptime",
            format_duration(st.uptime),
            "since " + time.strftime("%Y-%m-%d %H:%M", time.gmtime(st.started_at)),
        ),
        _card(
            "Handshakes",
            str(st.handshakes.get("opened", 0)),
            f"opened · {st.failed_handshakes} failed",
        ),
        _card("From clients", format_bytes(st.rx_bytes), f"{st.rx_packets} packets"),
        _card("To clients", format_bytes(st.tx_bytes), f"{st.tx_packets} packets"),
        _card(
            "Auth failures",
            str(st.auth_failures),
            f"{st.crypto_binding_failures} binding failures",
        ),
    ]
    return f'<section class="cards">{"".join(cards)}</section>'


def _sessions(sessions: list[SessionRecord]) -> str:
    head = (
        '<th class="n">ID</th><th>User</th><th>Client</th><th>Address</th><th>Connected</th>'
        '<th class="n">From client</th><th class="n">To client</th><th>Auth</th><th>TLS</th>'
        "<th>Binding</th>"
    )
    if sessions:
        rows = "\n".join(_session_row(s) for s in sessions)
        table = f"<table><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>"
    else:
        table = '<div class="empty">No open sessions.</div>'
    return f'<h2>Sessions ({len(sessions)})</h2><div class="table">{table}</div>'
