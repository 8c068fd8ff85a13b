"""A real nginx in front of one compose service, re-configured from the engine once a second.

This is how nginx-proxy and similar set-ups work: a generator reads the engine's healthy
containers, rewrites the upstream block when the set changed, and reloads nginx (SIGHUP: new
workers take the new upstreams, old workers finish their requests). nginx runs with its stock
upstream behaviour: a request whose connection to a backend fails (refused, reset before the
response) is passed to the next backend of the block (`proxy_next_upstream error timeout`);
an HTTP answer from a backend, good or bad, is never retried.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
from collections import Counter
from pathlib import Path

import docker
import docker.errors

from tests.helpers.docker import healthy_backends, wait_for
from tests.helpers.redis_server import free_port

#: How often the generator re-reads the engine.
REFRESH_SECONDS = 1.0
#: A backend that does not accept within this long counts as failed and the next one is tried.
CONNECT_TIMEOUT = "2s"
#: What the upstream block holds while no container is healthy: nothing listens there, so nginx answers 502.
NOWHERE = ("127.0.0.1", 9)


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed: scripts/setup installs Debian's nginx package")
    return found



class NginxProxy:
    """`with NginxProxy(client, project, "web", directory) as proxy:` serves on `proxy.url`."""

    def __init__(self, client: docker.DockerClient, project: str, service: str, directory: Path,
                 port: int = 80, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.client = client
        self.project = project
        self.service = service
        self.port = port
        self.refresh_seconds = refresh_seconds
        self.directory = directory
        self.listen_port = free_port()
        self.url = f"http://127.0.0.1:{self.listen_port}"
        #: How many times the upstream block changed (each change is one reload).
        self.reloads = 0
        self.errors: Counter[str] = Counter()
        self._backends: list[tuple[str, int]] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="nginx-generator", daemon=True)

    def __enter__(self) -> NginxProxy:
        for sub in ("temp", "logs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self._write_upstreams(self._discover())
        (self.directory / "nginx.conf").write_text(self._main_config())
        binary = nginx_binary()
        checked = subprocess.run([binary, "-t", "-p", str(self.directory), "-c", "nginx.conf"],
                                 capture_output=True, text=True, timeout=30, check=False)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx refused its configuration: {checked.stderr}")
        self._process = subprocess.Popen([binary, "-p", str(self.directory), "-c", "nginx.conf"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(self._listening, timeout=10, interval=0.05):
            self.__exit__()
            raise RuntimeError(f"nginx did not listen on {self.url}: {self.error_log()}")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT)  # graceful: in-flight requests finish
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def error_log(self) -> str:
        path = self.directory / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.listen_port), timeout=0.5):
                return True
        except OSError:
            return False

    def _discover(self) -> list[tuple[str, int]]:
        return healthy_backends(self.client, self.project, self.service, self.port)

    def _follow(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                found = self._discover()
            except docker.errors.APIError as exc:
                self.errors[f"engine: {exc}"] += 1
                continue
            if found != self._backends and self._process is not None:
                self._write_upstreams(found)
                self._process.send_signal(signal.SIGHUP)
                self.reloads += 1

    def _write_upstreams(self, backends: list[tuple[str, int]]) -> None:
        servers = "".join(f"    server {host}:{port};\n" for host, port in (backends or [NOWHERE]))
        tmp = self.directory / "upstreams.conf.tmp"
        tmp.write_text(f"upstream app {{\n{servers}}}\n")
        os.replace(tmp, self.directory / "upstreams.conf")
        self._backends = backends

    def _main_config(self) -> str:
        user = "user root;\n" if os.geteuid() == 0 else ""
        return textwrap.dedent(f"""\
            {user}daemon off;
            worker_processes 1;
            pid nginx.pid;
            error_log logs/error.log warn;
            events {{ worker_connections 512; }}
            http {{
                access_log off;
                client_body_temp_path temp/body;
                proxy_temp_path temp/proxy;
                fastcgi_temp_path temp/fastcgi;
                uwsgi_temp_path temp/uwsgi;
                scgi_temp_path temp/scgi;
                include upstreams.conf;
                server {{
                    listen 127.0.0.1:{self.listen_port};
                    location / {{
                        proxy_pass http://app;
                        proxy_connect_timeout {CONNECT_TIMEOUT};
                    }}
                }}
            }}
        """)

