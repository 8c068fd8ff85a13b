"""Test support for Docker: a local base image, a health-aware proxy, a bounded load loop, sample apps.

There is no registry in the test environment, so every test image is built FROM a base made here
with `docker import` of a root filesystem holding Debian's static busybox.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import itertools
import tarfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import docker.errors

from workers import process

#: Every image the tests build to share between tests is named under this prefix; the session's end
#: removes those it made (tests/fixtures/machine.py).
TEST_IMAGE_PREFIX = "hooksvc-test/"
BASE_REPOSITORY = f"{TEST_IMAGE_PREFIX}base"
BASE_IMAGE = f"{BASE_REPOSITORY}:latest"
#: Bump when the root filesystem below changes, so an old base image on a machine gets rebuilt.
BASE_REVISION = "1"
BASE_REVISION_LABEL = "hooksvc.test-base-revision"
#: Debian's busybox-static: a dynamically linked busybox would not run in an empty root filesystem.
BUSYBOX = Path("/bin/busybox")

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

#: The proxy re-reads the engine's view this often (Traefik reacts to events within about as long).
PROXY_POLL_SECONDS = 0.25
#: One proxied or load request; busybox httpd answers in milliseconds on loopback.
REQUEST_TIMEOUT_SECONDS = 3.0


# ---- base image -----------------------------------------------------------------------------

def ensure_base_image(client: docker.DockerClient) -> str:
    """Build `hooksvc-test/base:latest` once (idempotent) and return its image id."""
    try:
        image = client.images.get(BASE_IMAGE)
        if (image.labels or {}).get(BASE_REVISION_LABEL) == BASE_REVISION:
            return str(image.id)
    except docker.errors.ImageNotFound:
        pass
    if not BUSYBOX.is_file():
        raise RuntimeError(f"{BUSYBOX} is missing: install Debian's busybox-static to build the test base image")
    client.api.import_image_from_data(
        _base_rootfs(),
        repository=BASE_REPOSITORY,
        tag="latest",
        changes=["ENV PATH=/bin", 'CMD ["sh"]', f"LABEL {BASE_REVISION_LABEL}={BASE_REVISION}"],
    )
    return str(client.images.get(BASE_IMAGE).id)


def _base_rootfs() -> bytes:
    """A tar of /bin/busybox with a symlink per applet, /tmp (an imported fs has none) and /etc basics."""
    applets = process.run([str(BUSYBOX), "--list"], capture=True, timeout=10).output.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("www", 0o755)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ---- sample apps ----------------------------------------------------------------------------

#: Fails once /tmp/drain exists, so `touch /tmp/drain` takes a container out of a health-aware proxy.
HEALTH_TEST = "test ! -e /tmp/drain && timeout 3 wget -q -O- http://127.0.0.1/health"


def write_sample_app(directory: Path, version: str, *, healthy: bool = True, build_fails: bool = False,
                     boot_seconds: float = 1.0, drain_seconds: float = 1.0, labels: bool = True,
                     graceful_stop: bool = False, publish_ip: str = "127.0.0.1") -> Path:
    """Write a one-service app (busybox httpd serving `version.txt`) with a drain-aware healthcheck.

    `healthy=False` leaves out /health so the release never becomes healthy; `build_fails=True`
    makes `compose build` fail; `labels=False` leaves out every hooksvc label (no drain command, no
    drain time), as a compose file written without hooksvc in mind. The host port is ephemeral on
    `publish_ip` (the engine machine's address; 127.0.0.1 for the main engine), so two replicas
    fit. busybox httpd dies at once on SIGTERM, taking the requests it is answering with it;
    `graceful_stop=True` makes the app stop as servers such as gunicorn or nginx do: on SIGTERM
    it stops accepting, lets the requests in flight finish (1 s), then exits.
    """
    www = directory / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "version.txt").write_text(f"{version}\n")
    health = www / "health"
    if healthy:
        health.write_text("ok\n")
    elif health.exists():
        health.unlink()
    failing_step = 'RUN echo "intentional build failure" && exit 3\n' if build_fails else ""
    serve = ("httpd -f -v -p 80 -h /www & trap 'kill $!; sleep 1; exit 0' TERM; wait" if graceful_stop
             else "exec httpd -f -v -p 80 -h /www")
    (directory / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        f"{failing_step}"
        "COPY www /www\n"
        f'CMD ["sh", "-c", "sleep {boot_seconds:g}; echo serving {version}; {serve}"]\n'
    )
    label_lines = ("    labels:\n"
                   '      hooksvc.drain: "touch /tmp/drain"\n'
                   f'      hooksvc.drain_seconds: "{drain_seconds:g}"\n') if labels else ""
    (directory / "docker-compose.yml").write_text(
        "services:\n"
        "  web:\n"
        "    build: .\n"
        "    init: true\n"
        "    ports:\n"
        f'      - "{publish_ip}::80"\n'
        f"{label_lines}"
        "    stop_grace_period: 2s\n"
        "    healthcheck:\n"
        f'      test: ["CMD", "sh", "-c", "{HEALTH_TEST}"]\n'
        "      interval: 1s\n"
        "      timeout: 3s\n"
        "      retries: 2\n"
        "      start_period: 4s\n"
    )
    return directory


def write_django_like_app(directory: Path, version: str, host_port: int, db_name: str = "app",
                          with_cache: bool = False) -> Path:
    """Write a compose project shaped like a typical Django one: web on a fixed port, db on a named volume.

    Both images come from the busybox base: web's httpd stands in for `manage.py runserver`, db's
    shell loop for PostgreSQL (it keeps a file in its volume). `with_cache` adds a stateless
    `cache` service (think Redis), so a later release without it leaves an orphan.
    """
    www = directory / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "version.txt").write_text(f"{version}\n")
    (directory / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        "WORKDIR /code\n"
        "COPY . /code/\n"
        'CMD ["httpd", "-f", "-p", "8000", "-h", "/code/www"]\n'
    )
    (directory / "docker-compose.yml").write_text(textwrap.dedent(f"""\
        services:
          db:
            image: {BASE_IMAGE}
            init: true
            command: ["sh", "-c", "echo $$POSTGRES_DB >> /var/lib/postgresql/data/boots; exec sleep 1000000"]
            environment:
              - POSTGRES_DB={db_name}
              - POSTGRES_USER=postgres
              - POSTGRES_PASSWORD=postgres
            volumes:
              - db_data:/var/lib/postgresql/data
          web:
            build: .
            init: true
            command: ["httpd", "-f", "-p", "8000", "-h", "/code/www"]
            volumes:
              - .:/code
            ports:
              - "{host_port}:8000"
            depends_on:
              - db
        volumes:
          db_data:
        """))
    if with_cache:
        text = (directory / "docker-compose.yml").read_text()
        cache = f"""  cache:\n    image: {BASE_IMAGE}\n    init: true\n    command: ["sleep", "1000000"]\n"""
        (directory / "docker-compose.yml").write_text(text.replace("services:\n", "services:\n" + cache, 1))
    return directory


# ---- a health-aware proxy -------------------------------------------------------------------

def healthy_backends(client: docker.DockerClient, project: str, service: str, port: int) -> list[tuple[str, int]]:
    """Where the healthy containers of one compose service listen, as a health-aware proxy finds them.

    A container counts once its healthcheck says `healthy` (Traefik's Docker provider and
    nginx-proxy's docker-gen skip the others). Its published port on the address it is published on
    (127.0.0.1, or a test engine's own address) when it has one, else its IP on its first network.
    """
    filters: dict[str, Any] = {"label": [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"],
                               "health": "healthy"}
    found = [_address(summary, port) for summary in client.api.containers(filters=filters)]
    return sorted(a for a in found if a is not None)


def _address(summary: Mapping[str, Any], private_port: int) -> tuple[str, int] | None:
    for port in summary.get("Ports") or []:
        if port.get("PrivatePort") == private_port and port.get("PublicPort") \
                and port.get("IP") not in (None, "", "0.0.0.0", "::"):
            return str(port["IP"]), int(port["PublicPort"])
    for network in ((summary.get("NetworkSettings") or {}).get("Networks") or {}).values():
        if network.get("IPAddress"):
            return str(network["IPAddress"]), private_port
    return None


class HealthyProxy:
    """A reverse proxy on 127.0.0.1 routing round-robin to the healthy containers of one service.

    It re-reads the engine every `poll_seconds`, as Traefik's Docker provider follows the
    engine: a container joins once `healthy` and leaves once it is not. Backends are reached via
    their published port on 127.0.0.1 when they have one, else via the container's IP. Requests
    are not retried, so every failure a rollout causes shows in the load loop.
    """

    def __init__(self, client: docker.DockerClient, project: str, service: str, port: int = 80,
                 poll_seconds: float = PROXY_POLL_SECONDS) -> None:
        self.client = client
        self.poll_seconds = poll_seconds
        self.project = project
        self.service = service
        self.port = port
        self.backends: list[tuple[str, int]] = []
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="proxy-serve", daemon=True),
            threading.Thread(target=self._poll, name="proxy-poll", daemon=True),
        ]

    def __enter__(self) -> HealthyProxy:
        self.refresh()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def refresh(self) -> None:
        found = healthy_backends(self.client, self.project, self.service, self.port)
        with self._lock:
            self.backends = found

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except docker.errors.APIError as exc:
                self.errors[f"poll: {exc}"] += 1

    def _pick(self) -> tuple[str, int] | None:
        with self._lock:
            if not self.backends:
                return None
            return self.backends[next(self._turn) % len(self.backends)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
                backend = proxy._pick()
                if backend is None:
                    self._answer(503, b"no healthy backend\n")
                    return
                conn = http.client.HTTPConnection(*backend, timeout=REQUEST_TIMEOUT_SECONDS)
                try:
                    conn.request("GET", self.path)
                    response = conn.getresponse()
                    status, body = response.status, response.read()
                except (OSError, http.client.HTTPException) as exc:
                    # HTTPException: a backend that dies mid-answer (IncompleteRead) is a 502 too.
                    proxy.errors[f"{backend}: {type(exc).__name__}"] += 1
                    self._answer(502, f"backend {backend} failed: {exc}\n".encode())
                    return
                finally:
                    conn.close()
                self._answer(status, body)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        return Handler


# ---- a bounded load loop --------------------------------------------------------------------

@dataclass
class LoadReport:
    ok: int = 0
    failed: int = 0
    #: Body (stripped) of each successful answer -> how many times it came.
    versions: Counter[str] = field(default_factory=Counter)
    #: (seconds since start, what went wrong) for each failed request.
    failures: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0


class LoadLoop:
    """GET `url` at `rate` requests/s in a background thread, for at most `max_seconds`.

    Bounded in count (rate x max_seconds) and time; `stop()` ends it early and returns the report.
    """

    def __init__(self, url: str, rate: float = 25.0, max_seconds: float = 60.0) -> None:
        self.url = url
        self.rate = rate
        self.max_seconds = max_seconds
        self.report = LoadReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-loop", daemon=True)
        parsed = url.removeprefix("http://")
        hostport, _, path = parsed.partition("/")
        host, _, port = hostport.partition(":")
        self._host, self._port, self._path = host, int(port or 80), "/" + path

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT_SECONDS + 5)
        return self.report

    def _loop(self) -> None:
        start = time.monotonic()
        limit = int(self.rate * self.max_seconds)
        for n in range(limit):
            due = start + n / self.rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                break
            if time.monotonic() - start > self.max_seconds:
                break
            self._one(time.monotonic() - start)
        self.report.seconds = time.monotonic() - start

    def _one(self, at: float) -> None:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=REQUEST_TIMEOUT_SECONDS)
        try:
            conn.request("GET", self._path)
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace").strip()
            if response.status == 200:
                self.report.ok += 1
                self.report.versions[body] += 1
            else:
                self.report.failed += 1
                self.report.failures.append((at, f"HTTP {response.status}: {body[:200]}"))
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut short, garbled
            self.report.failed += 1
            self.report.failures.append((at, f"{type(exc).__name__}: {exc}"))
        finally:
            conn.close()


def get_text(url: str) -> tuple[int, str]:
    """One GET on loopback: (status, stripped body); status 0 when the connection failed."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        conn.request("GET", "/" + path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace").strip()
    except OSError:
        return 0, ""
    finally:
        conn.close()


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


#: How old an untagged image must be before a test's clean-up removes it (see `remove_project`).
DANGLING_SETTLE_SECONDS = 5.0


def remove_project(client: docker.DockerClient, project: str, images_since: int | None = None) -> None:
    """Remove everything compose made for `project`: containers, networks, volumes, built images (and
    the release tags hooksvc adds, `<project>.hooksvc-releases:...`).

    With `images_since` (a unix time), untagged images created since then go too: each rebuild
    under the same tag leaves the previous image dangling. They are removed without force, so an
    image still used by anyone's container stays.
    """
    label = {"label": f"{PROJECT_LABEL}={project}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(v=True, force=True)
    for network in client.networks.list(filters=label):
        network.remove()
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)
    # Summaries only: `images.list()` inspects each image in turn, which fails when another test
    # removes one meanwhile.
    for summary in client.api.images():
        for tag in summary.get("RepoTags") or []:
            if tag.startswith((f"{project}-", f"{project}_", f"{project}.")):
                # By tag, not by id: another test's build of identical content has the same image id,
                # and its tags must stay. The image goes with its last tag.
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_image(tag)
    if images_since is not None:
        def dangling() -> list[dict[str, Any]]:
            return [s for s in client.api.images(filters={"dangling": True})
                    if int(s.get("Created", 0)) >= images_since]

        # A build running beside this test (another test process) commits each step as an untagged
        # image that is a dangling leaf until its next step commits on top of it: removing it then
        # fails that build ("unknown parent image ID"). Such a leaf is young; waiting until the young
        # ones are DANGLING_SETTLE_SECONDS old lets their builds move on, and they are no longer listed.
        youngest = max((int(s.get("Created", 0)) for s in dangling()), default=0)
        wait = youngest + DANGLING_SETTLE_SECONDS - time.time()
        if wait > 0:
            time.sleep(wait)
        for summary in dangling():
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_image(summary["Id"])
