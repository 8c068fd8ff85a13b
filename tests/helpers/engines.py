"""A second Docker engine for tests: a private `dockerd` standing in for a remote engine.

It has its own API socket (and a TCP listener on 127.0.0.1), data root, exec root (hence its own
containerd), pid file and networks, and it leaves the machine's main engine alone:

- `--bridge=hsd-XXXXXXXX`: a bridge of its own, which the helper creates before dockerd starts and
  deletes after it stopped. Never `--bridge=none` in the host's network namespace: Moby then
  deletes the link named `docker0` on start (`removeDefaultBridgeInterface`), which belongs to the
  main engine, and the main engine's builds and default-bridge containers fail until it restarts.
- `--default-address-pool` in a 10.N.0.0/16 that no host route uses yet: the main engine
  allocates from 172.17-31.0.0/16 and 192.168.0.0/16, and daemons do not know each other's
  networks, so overlapping pools would give two bridges the same route.
- `--iptables=false --ip-masq=false --ip-forward=false`: the main engine owns the host's firewall
  rules; two daemons rewriting the same DOCKER chains undo each other's rules. Published ports
  still work on the host's loopback through Docker's userland proxy (`docker-proxy`), which
  connects to the container's address on the bridge.

The fixture that starts it is in tests/fixtures/engines.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker
import docker.errors

from tests.helpers.redis_server import free_port

#: Second octets of the private /16 address pools to choose from (10.N.0.0/16): well away from the
#: main engine's defaults (see the module docstring) and from Swarm's 10.0.0.0/24 overlays.
POOL_OCTETS = range(200, 250)
#: A cold start takes about a second here; a loaded machine may take much longer.
START_TIMEOUT_SECONDS = 60.0
#: dockerd stops its containers (each within its stop grace) before it exits.
STOP_TIMEOUT_SECONDS = 60.0


def free_address_pool() -> str:
    """A 10.N.0.0/16 pool no host route overlaps yet: another test session's second engine may be
    running beside this one, and two engines handing out the same subnet give two bridges one route."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
    taken = {int(line.split(".")[1]) for line in routes.splitlines() if line.startswith("10.")}
    free = [n for n in POOL_OCTETS if n not in taken]
    if not free:
        raise RuntimeError(f"every address pool 10.N.0.0/16 for N in {POOL_OCTETS} has routes already")
    return f"base=10.{random.choice(free)}.0.0/16,size=24"


def bridge_gateway(address_pool: str) -> str:
    """The bridge's own address: the pool's last /24 (dockerd skips subnets a host route already uses)."""
    second_octet = address_pool.split(".")[1]
    return f"10.{second_octet}.255.1/24"


class DockerDaemon:
    """One private dockerd, started as root: `start`, `stop`, `restart`, and clients for it."""

    def __init__(self) -> None:
        if shutil.which("dockerd") is None:
            raise RuntimeError("dockerd is not on PATH: install Debian's docker.io")
        if os.geteuid() != 0:
            raise RuntimeError("a second Docker engine must be started as root")
        # Short: containerd's socket lives under the exec root, and unix socket paths are limited.
        self.home = Path(tempfile.mkdtemp(prefix="hsd-", dir="/tmp"))
        self.socket = self.home / "docker.sock"
        self.tcp_port = free_port()
        self.address_pool = free_address_pool()
        #: At most 15 characters (IFNAMSIZ); unique, so two test sessions' engines never share one.
        self.bridge = f"hsd-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The engine as `docker_host` / `DOCKER_HOST` names it: its unix socket."""
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        """The same engine over plain TCP on loopback (as `tcp://host:2375` names a remote one)."""
        return f"tcp://127.0.0.1:{self.tcp_port}"

    def argv(self) -> list[str]:
        return [
            "dockerd",
            "--host", self.url, "--host", self.tcp_url,
            "--data-root", str(self.home / "root"), "--exec-root", str(self.home / "exec"),
            "--pidfile", str(self.home / "docker.pid"),
            f"--bridge={self.bridge}", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--default-address-pool", self.address_pool,
        ]

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=timeout)

    def create_bridge(self) -> None:
        """The engine's default bridge, made here so dockerd never touches the main engine's `docker0`."""
        if Path("/sys/class/net", self.bridge).exists():
            return
        for argv in (["ip", "link", "add", self.bridge, "type", "bridge"],
                     ["ip", "addr", "add", bridge_gateway(self.address_pool), "dev", self.bridge],
                     ["ip", "link", "set", self.bridge, "up"]):
            subprocess.run(argv, check=True, capture_output=True)

    def delete_bridge(self) -> None:
        if Path("/sys/class/net", self.bridge).exists():
            subprocess.run(["ip", "link", "delete", self.bridge], check=False, capture_output=True)

    def start(self) -> None:
        self.create_bridge()
        log = (self.home / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the second dockerd exited {self.proc.returncode}:\n{self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the second dockerd did not answer within {START_TIMEOUT_SECONDS:.0f}s:\n"
                           f"{self.log_tail()}")

    def answers(self) -> bool:
        try:
            with contextlib.closing(self.client(timeout=2)) as client:
                return bool(client.ping())
        except docker.errors.DockerException:
            return False

    def stop(self) -> None:
        """SIGTERM and wait: dockerd stops its containers, its containerd and the API, then exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.home / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def remove_everything(self) -> None:
        """Containers and networks first: a bridge outlives its daemon unless its network is removed."""
        with contextlib.closing(self.client()) as client:
            for container in client.containers.list(all=True):
                container.remove(v=True, force=True)
            for network in client.networks.list():
                if network.name not in ("host", "none", "bridge"):
                    with contextlib.suppress(docker.errors.APIError):
                        network.remove()

    def destroy(self) -> None:
        """Stop the daemon and delete its data root, unmounting anything it left mounted there."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(docker.errors.DockerException):
                self.remove_everything()
        self.stop()
        prefix = str(self.home) + "/"
        with open("/proc/mounts", encoding="utf-8") as mounts:
            leftover = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for mountpoint in sorted(leftover, reverse=True):
            subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)
        self.delete_bridge()


def copy_image(source: docker.DockerClient, target: docker.DockerClient, name: str) -> None:
    """`docker save NAME | docker -H TARGET load`: there is no registry to pull from."""
    data = b"".join(source.images.get(name).save(named=True))
    target.images.load(data)
