"""The WSGI application: a thin factory around the pure :func:`render`.

``render(environ, query, now)`` maps one request to ``(status, headers, body)``; ``query``
asks the daemon (``query("stats")`` -> the answer dict, raising ``ControlError`` when the
daemon cannot be reached), so tests give it a fake and the app gives it the control socket.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sstpd import control
from sstpd.status.metrics import CONTENT_TYPE as METRICS_TYPE
from sstpd.status.metrics import render_metrics
from sstpd.status.page import render_page

__all__ = ["ENV_CONFIG", "ENV_SOCKET", "Response", "create_app", "render", "socket_path"]

ENV_SOCKET = "SSTPD_CONTROL_SOCKET"
ENV_CONFIG = "SSTPD_CONFIG"

Headers = list[tuple[str, str]]
Response = tuple[str, Headers, bytes]
Query = Callable[[str], dict[str, Any]]
StartResponse = Callable[[str, Headers], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_STATUS_TEXT = {
    200: "200 OK",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}
_COMMON = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]
_HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


def _response(code: int, ctype: str, body: bytes, extra: Headers | None = None) -> Response:
    headers = [("Content-Type", ctype), ("Content-Length", str(len(body))), *_COMMON]
    return _STATUS_TEXT[code], headers + (extra or []), body


def _json(code: int, obj: object) -> Response:
    return _response(code, _JSON, json.dumps(obj, indent=1).encode() + b"\n")


def render(environ: Mapping[str, Any], query: Query, now: float, title: str = "sstpd") -> Response:
    """One request -> ``(status line, headers, body)``. Pure apart from ``query``."""
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    path = str(environ.get("PATH_INFO", "") or "/")
    if method not in ("GET", "HEAD"):
        status, headers, body = _response(
            405, _TEXT, b"method not allowed\n", [("Allow", "GET, HEAD")]
        )
    else:
        status, headers, body = _route(path, query, now, title)
    if method == "HEAD":
        body = b""  # Content-Length stays that of the GET answer
    return status, headers, body


def _route(path: str, query: Query, now: float, title: str) -> Response:
    if path == "/healthz":
        return _healthz(query)
    if path == "/metrics":
        try:
            stats: dict[str, Any] | None = query("stats")
        except control.ControlError:
            stats = None
        return _response(200, METRICS_TYPE, render_metrics(stats).encode())
    if path in ("/api/sessions", "/api/stats"):
        try:
            answer = query(path.rsplit("/", 1)[1])
        except control.ControlError as exc:
            return _json(503, {"error": str(exc)})
        answer.pop("ok", None)
        return _json(200, answer)
    if path in ("/", "/index.html"):
        return _page(query, now, title)
    return _response(404, _TEXT, b"not found\n")


def _healthz(query: Query) -> Response:
    try:
        health = query("health")
    except control.ControlError as exc:
        return _response(503, _TEXT, f"down: {exc}\n".encode())
    if health.get("accepting"):
        return _response(200, _TEXT, b"ok\n")
    return _response(503, _TEXT, f"{health.get('status', 'not accepting')}\n".encode())


def _page(query: Query, now: float, title: str) -> Response:
    try:
        stats = query("stats")
        sessions = query("sessions")["sessions"]
    except control.ControlError as exc:
        html = render_page(None, [], now=now, title=title, error=str(exc))
        code = 503
    else:
        html = render_page(stats, sessions, now=now, title=title)
        code = 200
    return _response(
        code, "text/html; charset=utf-8", html.encode(), [("Content-Security-Policy", _HTML_CSP)]
    )


def socket_path() -> str:
    """$SSTPD_CONTROL_SOCKET, else server.control_socket of $SSTPD_CONFIG (or of
    /etc/sstpd/sstpd.toml), else the built-in default."""
    env = os.environ.get(ENV_SOCKET)
    if env:
        return env
    return control.default_socket_path(os.environ.get(ENV_CONFIG) or None)


def create_app(
    control_socket: str | None = None, timeout: float = 3.0, title: str | None = None
) -> WsgiApp:
    """The WSGI callable, e.g. ``gunicorn 'sstpd.status:create_app()'``."""
    path = control_socket or socket_path()
    name = title or _hostname()

    def query(cmd: str) -> dict[str, Any]:
        return control.call(path, cmd, timeout=timeout)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status, headers, body = render(environ, query, time.time(), name)
        start_response(status, headers)
        return [body]

    return app


def _hostname() -> str:
    return f"sstpd on {socket.gethostname()}"
