"""Test support for Docker Swarm: a proxy task that routes through Swarm's DNS, a sample stack app,
a real registry (Debian's `docker-registry`), and removing what a test's stack left.

This kernel has no IPVS, so a service's virtual IP and the routing mesh do not work: the proxy is a
task of the stack, published in host mode, that finds the healthy tasks of `web` through the DNS name
`tasks.web`, which lists a task once it is healthy and drops it before the task is stopped.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import tarfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import docker
import docker.errors

from tests.helpers.docker import BASE_IMAGE

PROXY_IMAGE = "hooksvc-test/swarm-proxy:1"
#: The proxy's URL path: a CGI script of busybox httpd, one `wget` of `tasks.web` per request.
PROXY_PATH = "/cgi-bin/web"
#: busybox httpd runs the script for each request: a fresh name lookup of tasks.web every time.
PROXY_CGI = textwrap.dedent("""\
    #!/bin/sh
    if body=$(timeout 3 wget -q -O- http://tasks.web:8080/version.txt 2>&1); then
      printf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' "$body"
    else
      printf 'Status: 502 Bad Gateway\\r\\nContent-Type: text/plain\\r\\n\\r\\nproxy: %s\\n' "$body"
    fi
    """)
STACK_LABEL = "com.docker.stack.namespace"
REGISTRY_BINARY = Path("/usr/bin/docker-registry")


def ensure_proxy_image(client: docker.DockerClient) -> str:
    """Build the proxy image from the local base (no RUN step: nothing needs a network to build)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dockerfile = f'FROM {BASE_IMAGE}\nCOPY web /www/cgi-bin/web\nCMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
        for name, text, mode in (("Dockerfile", dockerfile, 0o644), ("web", PROXY_CGI, 0o755)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    image, _ = client.images.build(fileobj=buffer, custom_context=True, tag=PROXY_IMAGE, rm=True)
    return str(image.id)



def swarm_app_files(version: str, *, proxy_port: int, healthy: bool = True, build_fails: bool = False,
                    image: str | None = None, proxy_order: str = "stop-first", replicas: int = 1,
                    api: bool = False, sidecar: bool = False, start_period: str = "3s", proxy_built: bool = False,
                    failure_action: str | None = None) -> dict[str, str | None]:
    """A stack app: `web` (busybox httpd with a healthcheck, built) behind `proxy`.

    One replica by default: then only the update order keeps it serving while a release replaces it.

    `healthy=False` leaves out /health, so the release's tasks never become healthy; `build_fails=True`
    copies a file that does not exist; `image` names the built image (needed with a registry). The
    proxy publishes `proxy_port` in host mode and updates stop-first (a host port cannot be held twice).
    `api` adds a second service built from the same image, healthy whatever `healthy` says; `sidecar`
    a service of the base image that only sleeps. Within `start_period` a failing probe does not count:
    the task stays `starting`. `proxy_built` builds the proxy (`FROM` the proxy image, the same in every
    release) instead of running the proxy image; `failure_action` sets `web`'s update_config.failure_action.
    """
    image_line = f"    image: {image}\n" if image else ""
    extra = ""
    if api:
        extra += ("  api:\n    build: .\n    init: true\n    stop_grace_period: 2s\n"
                  '    healthcheck:\n      test: ["CMD", "true"]\n      interval: 1s\n'
                  "    deploy:\n      update_config:\n        monitor: 2s\n")
    if sidecar:
        extra += f'  sidecar:\n    image: {BASE_IMAGE}\n    init: true\n    command: ["sleep", "1000000"]\n'

    missing = "COPY no-such-file /www/\n" if build_fails else ""
    proxy_source = "    build: proxy\n" if proxy_built else f"    image: {PROXY_IMAGE}\n"
    failure_line = f"        failure_action: {failure_action}\n" if failure_action else ""
    return {
        "Dockerfile": f'FROM {BASE_IMAGE}\nCOPY www /www\n{missing}CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n',
        "www/version.txt": f"{version}\n",
        "www/health": "ok\n" if healthy else None,
        "proxy/Dockerfile": f"FROM {PROXY_IMAGE}\n" if proxy_built else None,
        "docker-compose.yml": (
            "services:\n"
            "  web:\n"
            "    build: .\n"
            f"{image_line}"
            "    init: true\n"
            "    stop_grace_period: 2s\n"
            "    healthcheck:\n"
            '      test: ["CMD", "sh", "-c", "timeout 3 wget -q -O- http://127.0.0.1:8080/health"]\n'
            "      interval: 1s\n"
            "      timeout: 3s\n"
            "      retries: 2\n"
            f"      start_period: {start_period}\n"
            "    deploy:\n"
            f"      replicas: {replicas}\n"
            "      update_config:\n"
            "        monitor: 2s\n"
            f"{failure_line}"
            "  proxy:\n"
            f"{proxy_source}"
            "    init: true\n"
            "    ports:\n"
            f"      - {{target: 80, published: {proxy_port}, mode: host}}\n"
            "    deploy:\n"
            "      update_config:\n"
            f"        order: {proxy_order}\n"
            f"{extra}"
        ),
    }


def remove_stack(client: docker.DockerClient, stack: str, timeout: float = 60.0) -> None:
    """Remove a stack's services, then its networks (once their tasks are gone), then its images."""
    label = {"label": f"{STACK_LABEL}={stack}"}
    for service in client.services.list(filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            service.remove()
    deadline = time.monotonic() + timeout
    # The low-level list: the high-level one inspects each container, which races with their removal.
    while time.monotonic() < deadline and client.api.containers(all=True, filters=label):
        time.sleep(0.5)
    for container in client.api.containers(all=True, filters=label):
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_container(container["Id"], force=True, v=True)
    for network in client.networks.list(filters=label):
        for _ in range(20):  # the engine detaches a removed task's endpoint a moment later
            try:
                network.remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                time.sleep(0.5)
    for summary in client.api.images():
        for tag in summary.get("RepoTags") or []:
            if _in_stack(tag, stack):
                # By tag, not by id: an image of identical content (the shared base) has the same id,
                # and force-removing the id would take the other tags with it.
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_image(tag, force=True)


def _in_stack(tag: str, stack: str) -> bool:
    repository = tag.rsplit(":", 1)[0] if tag.rfind(":") > tag.rfind("/") else tag
    parts = repository.split("/")
    return any(p == stack or p.startswith((f"{stack}-", f"{stack}_")) for p in parts)


class RegistryServer:
    """Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, storing in a directory of its own.

    The engine pushes to 127.0.0.0/8 over plain HTTP without being told to (it trusts loopback).
    """

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RegistryServer:
        if not REGISTRY_BINARY.is_file():
            raise RuntimeError(f"{REGISTRY_BINARY} is missing: install Debian's docker-registry (scripts/setup does)")
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(textwrap.dedent(f"""\
            version: 0.1
            log:
              level: warn
            storage:
              filesystem:
                rootdirectory: {self.root / 'data'}
              delete:
                enabled: true
            http:
              addr: {self.address}
            """))
        log = (self.root / "registry.log").open("wb")
        self.proc = subprocess.Popen([str(REGISTRY_BINARY), "serve", str(config)], stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while self._get("/v2/") is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"docker-registry did not answer on {self.address}: "
                                   f"{(self.root / 'registry.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tags(self, repository: str) -> list[str]:
        """The tags the registry lists for `repository` (its HTTP API, /v2/<name>/tags/list)."""
        body = self._get(f"/v2/{repository}/tags/list")
        return sorted(json.loads(body).get("tags") or []) if body else []

    def _get(self, path: str) -> str | None:
        # No proxy from the developer's environment between the test and a loopback server.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{self.address}{path}", timeout=3) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError):
            return None
