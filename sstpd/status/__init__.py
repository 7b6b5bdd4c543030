"""The status web app: a WSGI application for gunicorn, reading the daemon's control socket.

    gunicorn --bind 127.0.0.1:9100 'sstpd.status:create_app()'

Endpoints: ``/healthz`` (200 "ok" while accepting sessions, 503 while draining, full,
stopping or unreachable), ``/metrics`` (Prometheus text format 0.0.4), ``/api/sessions``
and ``/api/stats`` (JSON), ``/`` (HTML), ``/profiles/<platform>[?user=NAME]`` (client
setup files from the configuration file $SSTPD_CONFIG or /etc/sstpd/sstpd.toml, see
``sstpd profile``). Only GET and HEAD (405 otherwise). The socket
is $SSTPD_CONTROL_SOCKET, else ``server.control_socket`` of $SSTPD_CONFIG or
/etc/sstpd/sstpd.toml, else /run/sstpd/control.sock.
"""

from sstpd.status.app import create_app, render

__all__ = ["create_app", "render"]
