"""Test support for running hooksvc's own image: stand-in base images, the image build, a relay.

No registry is reachable from the test machines, so `python:3.11-slim-trixie` (the Dockerfile's
`PYTHON_IMAGE`) and `redis:7-alpine` cannot be pulled. Stand-ins are made here from Debian's own
packages: `mmdebstrap` writes a minimal Debian 13 root filesystem to a tarball, which is
`docker import`ed. The tarballs are cached outside Docker (`CACHE_DIR`, keyed by everything that
goes into them), so after the first run only the import is left; the imported images are removed
again by the tests, which leave the engine as they found it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.models.containers

from tests.helpers.docker import write_sample_app

ROOT = Path(__file__).resolve().parent.parent.parent
#: Root filesystem tarballs live here between runs; HOOKSVC_TEST_CACHE moves them.
CACHE_DIR = Path(os.environ.get("HOOKSVC_TEST_CACHE", "/var/cache/hooksvc-tests"))
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: The machine's trust store: an image that must reach PyPI through this machine's network has to
#: trust what the machine trusts (a TLS-inspecting proxy's CA, for one).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: mmdebstrap of a minbase system with a few packages takes 40-90 s on 2 busy cores.
MMDEBSTRAP_TIMEOUT_SECONDS = 900.0
#: `docker build` of hooksvc's image: apt-get (about 45 MB) and pip (about 55 MB installed).
BUILD_TIMEOUT_SECONDS = 900.0
BUILD_ATTEMPTS = 4


@dataclass(frozen=True)
class Rootfs:
    """A minimal Debian root filesystem and how it becomes an image."""

    name: str
    packages: tuple[str, ...]
    #: mmdebstrap --customize-hook commands (`$1` is the root directory).
    hooks: tuple[str, ...] = ()
    #: `docker import --change` instructions.
    changes: tuple[str, ...] = ()
    suite: str = "trixie"
    #: Files whose content goes into the image through a hook, so they are part of the cache key.
    inputs: tuple[Path, ...] = ()

    def key(self) -> str:
        digest = hashlib.sha256(repr((self.suite, self.packages, self.hooks, self.changes)).encode())
        for path in self.inputs:
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]


#: Stands in for python:3.11-slim-trixie: Debian 13's Python (3.13) with pip, `python` on PATH, and
#: pip allowed to install into /usr/local as in the official image (no PEP 668 marker).
PYTHON_ROOTFS = Rootfs(
    name="python",
    packages=("python3", "python3-pip", "python-is-python3", "ca-certificates"),
    hooks=('rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
           f'cp {HOST_CA_BUNDLE} "$1/usr/local/share/ca-certificates/host-trust.crt"'
           ' && chroot "$1" update-ca-certificates >/dev/null'),
    changes=("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["python3"]'),
    inputs=(HOST_CA_BUNDLE,),
)

#: Stands in for redis:7-alpine: Debian 13's redis-server and redis-cli, run in /data as that image does.
#: The official image builds redis with protected mode off (it is reached over the container network);
#: Debian's keeps it on, so a wrapper earlier on PATH turns it off.
REDIS_ROOTFS = Rootfs(
    name="redis",
    packages=("redis-server",),
    hooks=('mkdir -p "$1/data"',
           "printf '#!/bin/sh\\nexec /usr/bin/redis-server \"$@\" --protected-mode no\\n'"
           ' >"$1/usr/local/bin/redis-server" && chmod 0755 "$1/usr/local/bin/redis-server"'),
    changes=("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "WORKDIR /data",
             "EXPOSE 6379", 'CMD ["redis-server"]'),
)


def rootfs_tarball(spec: Rootfs, cache_dir: Path = CACHE_DIR) -> Path:
    """The cached tarball of `spec`, made with mmdebstrap when it is missing (once per content)."""
    target = cache_dir / f"{spec.name}-{spec.suite}-{spec.key()}.tar"
    if target.is_file():
        return target
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is missing: `scripts/setup --test` installs it (Debian package mmdebstrap)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f".{target.name}.{os.getpid()}.partial"
    argv = ["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root", "--format=tar",
            f"--include={','.join(spec.packages)}",
            "--aptopt=Acquire::Retries \"3\"",
            *(f"--customize-hook={hook}" for hook in spec.hooks),
            spec.suite, str(partial), DEBIAN_MIRROR]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=MMDEBSTRAP_TIMEOUT_SECONDS, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"mmdebstrap of {spec.name} failed (exit {result.returncode}):\n"
                               f"{result.stderr[-3000:]}")
        partial.rename(target)  # atomic: a concurrent run sees the whole tarball or none
    finally:
        partial.unlink(missing_ok=True)
    for stale in cache_dir.glob(f"{spec.name}-{spec.suite}-*.tar"):
        if stale != target:  # made for an earlier content of the spec
            stale.unlink(missing_ok=True)
    return target


def import_rootfs(client: docker.DockerClient, spec: Rootfs, repository: str) -> str:
    """`docker import` the cached tarball of `spec` as `repository:<key>`; returns that name."""
    tarball = rootfs_tarball(spec)
    name = f"{repository}:{spec.key()}"
    argv = ["docker", "import", *(arg for change in spec.changes for arg in ("--change", change)), str(tarball), name]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"docker import {tarball} failed: {result.stderr.strip()}")
    client.images.get(name)
    return name


def build_hooksvc_image(client: docker.DockerClient, python_image: str, tag: str) -> float:
    """Build this checkout's Dockerfile FROM `python_image` as `tag`; returns the seconds it took.

    `--network host`: the RUN steps reach Debian's archive and PyPI the way this machine does,
    whatever state the engine's default bridge is in. The classic builder leaves each step's image
    untagged until the next step builds on it, and other tests sweep untagged images they did not
    make: `--rm=false` keeps the builder from spending seconds removing a big step's container in
    that gap (the containers are removed here afterwards), and a build whose step image was swept
    anyway ("No such image") is tried again from the steps still cached.
    """
    started = time.monotonic()
    argv = ["docker", "build", "--rm=false", "--network", "host", "--build-arg", f"PYTHON_IMAGE={python_image}",
            "--tag", tag, str(ROOT)]
    for _ in range(BUILD_ATTEMPTS):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, check=False,
                                env={**os.environ, "DOCKER_BUILDKIT": "0"})
        for container_id in re.findall(r"Running in ([0-9a-f]{12})", result.stdout):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container_id, force=True)
        if result.returncode == 0:
            return time.monotonic() - started
        if "No such image: sha256:" not in result.stdout + result.stderr:
            break
    raise RuntimeError(f"docker build of {ROOT}/Dockerfile failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")


def remove_images(client: docker.DockerClient, names: list[str]) -> None:
    """Remove the images this module made, children first (the hooksvc image before its base)."""
    for name in names:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(name, force=True)


# ---- a sample app whose page comes from a bind mount of the release checkout -------------------

def sample_app_files(version: str, boot_seconds: float = 1.0) -> dict[str, str]:
    """`write_sample_app`'s app as a commit's files, its `./www` also bind-mounted from the release checkout.

    The mount hides the copy baked into the image, so what the app serves comes from the checkout
    the worker wrote, through a host path the engine had to find.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = write_sample_app(Path(tmp), version, boot_seconds=boot_seconds, graceful_stop=True)
        files = {str(path.relative_to(root)): path.read_text() for path in root.rglob("*") if path.is_file()}
    published = '      - "127.0.0.1::80"\n'
    assert published in files["docker-compose.yml"], files["docker-compose.yml"]
    files["docker-compose.yml"] = files["docker-compose.yml"].replace(
        published, published + "    volumes:\n      - ./www:/www:ro\n", 1)
    return files


# ---- a TCP relay from the compose network's gateway to a loopback server -----------------------

class TcpRelay:
    """Accept on `listen_host` (a free port) and pass each connection on to 127.0.0.1:`target_port`.

    The test's stand-in servers listen on loopback; containers reach the host at their network's
    gateway address, which this relay listens on, so nothing listens on an outside address.
    """

    def __init__(self, listen_host: str, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server((listen_host, 0))
        self.host, self.port = listen_host, int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-relay", daemon=True)

    def __enter__(self) -> TcpRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        with client, upstream, selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    key.data.sendall(data)


# ---- hooksvc's docker-compose.yml, brought up as its comments tell a user -----------------------

#: The worker's state directory: docker-compose.yml mounts the host's at the same path.
STATE_DIR = Path("/var/lib/hooksvc")
COMPOSE_FILE = ROOT / "docker-compose.yml"
#: A cold start on 2 busy cores: redis healthy, then web healthy (its first check after 10 s).
UP_TIMEOUT_SECONDS = 180


class SelfHostedCompose:
    """hooksvc's own docker-compose.yml, run from a project directory holding config.toml and .env.

    The shipped file is used as it is; `compose.override.yml` only swaps the `redis:7-alpine` image
    for the local stand-in. `.env` sets HOOKSVC_IMAGE and HOOKSVC_PUBLISH (a loopback port) and holds
    the secrets config.toml names, as the file's comments tell a user to.
    """

    def __init__(self, workdir: Path, project: str, redis_image: str, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.project = project
        (workdir / "compose.override.yml").write_text(f"services:\n  redis:\n    image: {redis_image}\n")
        (workdir / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        # The bind mount needs the file before the containers are made; the content comes later.
        (workdir / "config.toml").write_text("")

    def compose(self, *args: str, timeout: float = UP_TIMEOUT_SECONDS, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self._argv(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}\n"
                               f"{self.logs()}")
        return result

    def _argv(self, *args: str) -> list[str]:
        return ["docker", "compose", "--project-name", self.project, "--project-directory", str(self.workdir),
                "--file", str(COMPOSE_FILE), "--file", str(self.workdir / "compose.override.yml"), *args]

    def logs(self) -> str:
        """The last lines of every service's log, for failure messages."""
        result = subprocess.run(self._argv("logs", "--no-color", "--tail", "60"), capture_output=True, text=True,
                                timeout=60, check=False)
        return result.stdout[-6000:] + result.stderr[-1000:]

    def gateway(self, client: docker.DockerClient) -> str:
        """The host's address on the project's network: where its containers reach this machine."""
        network = client.networks.get(f"{self.project}_default")
        return str(network.attrs["IPAM"]["Config"][0]["Gateway"])

    def container(self, client: docker.DockerClient, service: str) -> docker.models.containers.Container:
        found = client.containers.list(all=True, filters={"label": [f"com.docker.compose.project={self.project}",
                                                                     f"com.docker.compose.service={service}"]})
        assert len(found) == 1, f"{service}: {found}"
        return found[0]

    def redis_cli(self, *args: str) -> str:
        return self.compose("exec", "-T", "redis", "redis-cli", *args, timeout=30).stdout.strip()

    def down(self) -> None:
        """Containers, network and the redis-data volume go; the images are the caller's."""
        self.compose("down", "--volumes", "--timeout", "30", check=False)


def remove_app_state(app: str, state_dir_existed: bool) -> None:
    """Remove what the worker kept on the host for `app`, and the state dir's folders when the test made
    them and they are empty.

    Never the whole folder at once: a worker container of hooksvc's docker-compose.yml bind-mounts it,
    and one started before its removal would keep a deleted folder it can no longer write in.
    """
    for path in (STATE_DIR / "mirrors" / f"{app}.git", STATE_DIR / "releases" / app, STATE_DIR / "tmp" / app):
        shutil.rmtree(path, ignore_errors=True)
    (STATE_DIR / "rollout" / f"{app}.json").unlink(missing_ok=True)
    if state_dir_existed:
        return
    for folder in (*sorted(STATE_DIR.glob("*/"), reverse=True), STATE_DIR):
        with contextlib.suppress(OSError):  # not empty: something else keeps state there
            folder.rmdir()


def scratch_dir(prefix: str) -> Path:
    """A temporary directory under /tmp with a short path (compose and git messages stay readable)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
