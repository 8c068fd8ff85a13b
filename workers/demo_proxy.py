"""The quickstart's front proxy: one stable URL for an app whose containers come and go.

A rolling deployment runs the new containers beside the old ones on ports Docker picks, so the app
needs something in front that follows the engine, as Traefik's Docker provider does in production.
This one re-reads the engine every `POLL_SECONDS` and routes, round robin, to the containers of one
compose service whose healthcheck says `healthy`: a new container joins once healthy, an old one
leaves once its drain command failed its healthcheck. A GET or HEAD that meets a container as it
stops is tried once more on the next one, so the pusher's visitors see no error.

    python -m workers.demo_proxy LISTEN_PORT PROJECT SERVICE CONTAINER_PORT
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import logging
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import docker
import docker.errors

log = logging.getLogger("hooksvc.demo_proxy")

#: How often the engine is asked which containers are healthy: a new container serves, and a drained one
#: stops getting requests, within this of its health changing (one filtered list call each time).
POLL_SECONDS = 0.1
#: One request to a container: the example app answers in milliseconds.
BACKEND_TIMEOUT_SECONDS = 10.0
LOOPBACK = "127.0.0.1"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def healthy_backends(client: docker.DockerClient, project: str, service: str, port: int) -> list[tuple[str, int]]:
    """(host, port) of each healthy container of `service`, by its port published on 127.0.0.1."""
    filters: dict[str, Any] = {"label": [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"],
                               "health": "healthy"}
    found = []
    for summary in client.api.containers(filters=filters):
        address = _published(summary, port)
        if address is not None:
            found.append(address)
    return sorted(found)


def serving(project: str, service: str, port: int) -> bool:
    """True when the local engine runs a healthy container of `service` the proxy can route to."""
    client = docker.from_env()
    try:
        return bool(healthy_backends(client, project, service, port))
    finally:
        client.close()


def _published(summary: Mapping[str, Any], port: int) -> tuple[str, int] | None:
    for p in summary.get("Ports") or []:
        if p.get("PrivatePort") == port and p.get("PublicPort") and p.get("IP") in (LOOPBACK, "0.0.0.0"):  # noqa: S104
            return LOOPBACK, int(p["PublicPort"])
    return None


class DemoProxy:
    def __init__(self, client: docker.DockerClient, listen_port: int, project: str, service: str, port: int) -> None:
        self.client = client
        self.project, self.service, self.port = project, service, port
        self.backends: list[tuple[str, int]] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((LOOPBACK, listen_port), self._handler())
        self.server.daemon_threads = True

    def refresh(self) -> None:
        found = healthy_backends(self.client, self.project, self.service, self.port)
        with self._lock:
            if found != self.backends:
                log.info("%s/%s: routing to %s", self.project, self.service, found or "nothing (no healthy container)")
            self.backends = found

    def poll_forever(self) -> None:
        while True:
            try:
                self.refresh()
            except (docker.errors.DockerException, OSError) as exc:
                log.warning("cannot read the engine's containers: %s", exc)
            threading.Event().wait(POLL_SECONDS)

    def choices(self) -> list[tuple[str, int]]:
        """The backends in the order to try them: round robin, then the others."""
        with self._lock:
            backends = list(self.backends)
        if not backends:
            return []
        start = next(self._turn) % len(backends)
        return backends[start:] + backends[:start]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
                self._forward("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self._forward("HEAD")

            def _forward(self, method: str) -> None:
                problem = "no healthy container yet (a deployment may be starting: see the dashboard)"
                for backend in proxy.choices()[:2]:
                    conn = http.client.HTTPConnection(*backend, timeout=BACKEND_TIMEOUT_SECONDS)
                    try:
                        conn.request(method, self.path)
                        response = conn.getresponse()
                        body = response.read()
                        headers = [(k, v) for k, v in response.getheaders()
                                   if k.lower() not in ("connection", "transfer-encoding", "content-length")]
                        self._answer(response.status, body, headers, method)
                        return
                    except (OSError, http.client.HTTPException) as exc:
                        problem = f"{backend[0]}:{backend[1]}: {exc}"
                    finally:
                        conn.close()
                self._answer(502 if proxy.backends else 503, f"{problem}\n".encode(), [], method)

            def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]], method: str) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        return Handler


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listen_port, project, service, port = int(argv[0]), argv[1], argv[2], int(argv[3])
    proxy = DemoProxy(docker.from_env(), listen_port, project, service, port)
    threading.Thread(target=proxy.poll_forever, name="demo-proxy-poll", daemon=True).start()
    log.info("serving %s/%s on http://%s:%d/", project, service, LOOPBACK, listen_port)
    with contextlib.suppress(KeyboardInterrupt):
        proxy.server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
