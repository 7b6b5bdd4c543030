"""The WSGI application: a thin factory around the pure :func:`render`.

``render(environ, query, now)`` maps one request to ``(status, headers, body)``; ``query``
asks the daemon (``query("stats")`` -> the answer's JSON object, raising ``ControlError``
when the daemon cannot be reached), so tests give it a fake and the app gives it the
control socket. The answers are read into ``sstpd.records`` before anything uses them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import parse_qs, quote

from sstpd import control
from sstpd.records import HealthRecord, RecordError, StatsRecord, sessions_from_json
from sstpd.status.metrics import CONTENT_TYPE as METRICS_TYPE
from sstpd.status.metrics import render_metrics
from sstpd.status.page import render_page

__all__ = [
    "ENV_CONFIG",
    "ENV_SOCKET",
    "Response",
    "create_app",
    "make_profile",
    "render",
    "socket_path",
]

ENV_SOCKET = "SSTPD_CONTROL_SOCKET"
ENV_CONFIG = "SSTPD_CONFIG"

Headers = list[tuple[str, str]]
Response = tuple[str, Headers, bytes]
Query = Callable[[str], dict[str, Any]]
# (platform, user or None) -> (file name, content type, text); raises SstpdError
Profiles = Callable[[str, str | None], tuple[str, str, str]]
StartResponse = Callable[[str, Headers], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_STATUS_TEXT = {
    200: "200 OK",
    400: "400 Bad Request",
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


def render(
    environ: Mapping[str, Any],
    query: Query,
    now: float,
    title: str = "sstpd",
    profiles: Profiles | None = None,
) -> Response:
    """One request -> ``(status line, headers, body)``. Pure apart from ``query`` and
    ``profiles`` (None: no ``/profiles/``)."""
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    path = str(environ.get("PATH_INFO", "") or "/")
    if method not in ("GET", "HEAD"):
        status, headers, body = _response(
            405, _TEXT, b"method not allowed\n", [("Allow", "GET, HEAD")]
        )
    elif profiles is not None and (path == "/profiles" or path.startswith("/profiles/")):
        status, headers, body = _profile(path, str(environ.get("QUERY_STRING", "")), profiles)
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
            stats: StatsRecord | None = StatsRecord.from_json(query("stats"))
        except (control.ControlError, RecordError):  # down, or not an answer we can read
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


def _profile(path: str, query_string: str, profiles: Profiles) -> Response:
    """``/profiles/``: the list; ``/profiles/<platform>[?user=NAME]``: a download."""
    from sstpd.errors import SstpdError
    from sstpd.profiles import PLATFORMS, ProfileError
    from sstpd.profiles.facts import validate_user

    platform = path[len("/profiles/") :].strip("/") if path.startswith("/profiles/") else ""
    if not platform:
        items = "".join(
            f'<li><a href="{quote(name)}">{escape(name)}</a>: {escape(what)}</li>'
            for name, (_, _, _, what) in PLATFORMS.items()
        )
        html = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            "<title>sstpd client profiles</title></head><body><h1>Client profiles</h1>"
            f"<ul>{items}</ul><p>Add <code>?user=NAME</code> to fill in a user name. No "
            "profile holds a password: it is asked on the client.</p></body></html>\n"
        )
        return _response(
            200, "text/html; charset=utf-8", html.encode(), [("Content-Security-Policy", _HTML_CSP)]
        )
    if platform not in PLATFORMS:
        return _response(404, _TEXT, b"no such profile\n")
    users = parse_qs(query_string).get("user", [])
    try:
        user = validate_user(users[0] if users else None)
    except ProfileError as exc:
        return _response(400, _TEXT, f"{exc}\n".encode())
    try:
        filename, ctype, text = profiles(platform, user)
    except SstpdError as exc:
        return _response(503, _TEXT, f"cannot make the profile: {exc}\n".encode())
    disposition = f'attachment; filename="{filename}"'
    return _response(200, ctype, text.encode(), [("Content-Disposition", disposition)])


def _healthz(query: Query) -> Response:
    try:
        health = HealthRecord.from_json(query("health"))
    except (control.ControlError, RecordError) as exc:
        return _response(503, _TEXT, f"down: {exc}\n".encode())
    if health.accepting:
        return _response(200, _TEXT, b"ok\n")
    return _response(503, _TEXT, f"{health.status or 'not accepting'}\n".encode())


def _page(query: Query, now: float, title: str) -> Response:
    try:
        stats = StatsRecord.from_json(query("stats"))
        sessions = sessions_from_json(query("sessions"))
    except (control.ControlError, RecordError) as exc:
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
        status, headers, body = render(environ, query, time.time(), name, make_profile)
        start_response(status, headers)
        return [body]

    return app


def make_profile(platform: str, user: str | None) -> tuple[str, str, str]:
    """A profile from the configuration file ($SSTPD_CONFIG, else /etc/sstpd/sstpd.toml),
    read on every request so that it follows the daemon's configuration."""
    from sstpd.config import DEFAULT_CONFIG_PATH, load_config
    from sstpd.profiles import ProfileError
    from sstpd.profiles import make_profile as make

    path = os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_PATH
    if not os.path.exists(path):
        raise ProfileError(f"{path} does not exist (set {ENV_CONFIG})")
    profile = make(load_config(path), platform, user)
    return profile.filename, profile.content_type, profile.text


def _hostname() -> str:
    return f"sstpd on {socket.gethostname()}"
