"""Run the app under uvicorn on a socket bound here: ``port=0`` takes a free port, and the line
``cdlm serve: listening on http://HOST:PORT`` is printed (and flushed) once the server accepts
connections, so scripts and tests read the real address from it."""

from __future__ import annotations

import socket
import sys
from typing import Any

LISTENING = "cdlm serve: listening on"


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

    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: serving on {host}: reachable from other machines, with no authentication",
            file=sys.stderr,
        )
    server = Server(uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
