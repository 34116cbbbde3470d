"""Run the app under uvicorn on a socket bound here: ``port=0`` takes a free port, and the line
``cdlm serve: listening on http://HOST:PORT`` is printed (and flushed) once the server accepts
connections, so scripts and tests read the real address from it. :func:`check_exposure` refuses
an address other machines reach unless a bearer key is set."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from cdlm.errors import ConfigError

LISTENING = "cdlm serve: listening on"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def check_exposure(host: str, key_env: str) -> None:
    """Refuse to serve beyond loopback without a bearer key in ``$key_env`` (ConfigError)."""
    if not is_loopback(host) and not os.environ.get(key_env):
        raise ConfigError(
            f"serve.host {host} is reachable from other machines: set a bearer key in "
            f"${key_env} first (clients then send Authorization: Bearer <key>), or bind 127.0.0.1"
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, as the host resolves)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: Any, host: str, port: int, *, log_level: str = "warning") -> None:
    """Serve ``app`` until interrupted (Ctrl-C or SIGTERM shut it down gracefully)."""
    import uvicorn

    sock = bind(host, port)
    url = url_of(sock)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                print(f"{LISTENING} {url}", flush=True)

    server = Server(uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
