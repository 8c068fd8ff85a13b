"""A second Docker engine for tests: a private `dockerd` standing in for a remote engine.

It runs in a network namespace of its own (`hsd-XXXXXXXX`), as a remote engine runs on a machine of
its own, with its own API socket (and a TCP listener on its own address), data root, exec root
(hence its own containerd), pid file, bridge and firewall rules. It leaves the machine's main
engine alone:

- Its own network namespace, not just its own bridge in the host's: Moby deletes the link named
  `docker0` in its namespace on start when the bridge is disabled (`--bridge=none`), and on every
  restart when address pools are given and a default bridge network is stored
  (`removeDefaultBridgeInterface`). In the host's namespace that `docker0` is the main engine's,
  whose builds and default-bridge containers then fail until it restarts. In its own namespace it
  deletes only its own.
- A veth pair joins the namespace to the host: the host end gets 10.N.254.1/30, the engine's end
  10.N.254.2/30 (`address`), with N chosen so that no host route uses 10.N.0.0/16 yet (another
  test session's engine may run beside this one). The engine listens for TCP there, and its
  containers publish ports there, as a remote machine's would: publish on `address` (or on all
  addresses, which in the namespace means `address` and its loopback).
- Inside the namespace the engine keeps its defaults (bridge, address pools, iptables): its
  routes and firewall rules are the namespace's own.

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
from pathlib import Path

import docker
import docker.errors

#: Second octets of the private /16 ranges to choose the link's /30 from (10.N.254.0/30): well away
#: from the main engine's 172.17-31.0.0/16 and 192.168.0.0/16 and from Swarm's 10.0.0.0/24 overlays.
LINK_OCTETS = range(200, 250)
#: A cold start takes about a second here; a loaded machine may take much longer.
START_TIMEOUT_SECONDS = 60.0
#: dockerd stops its containers (each within its stop grace) before it exits.
STOP_TIMEOUT_SECONDS = 60.0
#: The engine's TCP API port on its own address (Docker's customary plain-TCP port).
TCP_PORT = 2375


def free_link_octet() -> int:
    """N such that no host route uses 10.N.0.0/16 yet: two sessions' engines never share a link subnet."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
    taken = {int(line.split(".")[1]) for line in routes.splitlines() if line.startswith("10.")}
    free = [n for n in LINK_OCTETS if n not in taken]
    if not free:
        raise RuntimeError(f"every 10.N.0.0/16 for N in {LINK_OCTETS} has host routes already")
    return random.choice(free)


def run_ip(*args: str, namespace: str | None = None) -> None:
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


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
        #: The network namespace and the host end of its link (at most 15 characters: IFNAMSIZ).
        self.namespace = self.home.name[:12]
        self.host_link = f"{self.namespace}h"
        octet = free_link_octet()
        #: The host's end of the link, and the engine's own address, which its published ports use.
        self.host_address = f"10.{octet}.254.1"
        self.address = f"10.{octet}.254.2"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The engine as `docker_host` / `DOCKER_HOST` names it: its unix socket."""
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        """The same engine over plain TCP on its own address, as `tcp://host:2375` names a remote one."""
        return f"tcp://{self.address}:{TCP_PORT}"

    def argv(self) -> list[str]:
        return [
            "nsenter", f"--net=/run/netns/{self.namespace}", "dockerd",
            "--host", self.url, "--host", self.tcp_url,
            "--data-root", str(self.home / "root"), "--exec-root", str(self.home / "exec"),
            "--pidfile", str(self.home / "docker.pid"),
        ]

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=timeout)

    def create_namespace(self) -> None:
        """The engine's network namespace, joined to the host by a veth pair (see the module docstring)."""
        if Path("/run/netns", self.namespace).exists():
            return
        inner = f"{self.namespace}n"
        run_ip("netns", "add", self.namespace)
        run_ip("link", "add", self.host_link, "type", "veth", "peer", "name", inner)
        run_ip("link", "set", inner, "netns", self.namespace)
        run_ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
        run_ip("link", "set", self.host_link, "up")
        run_ip("addr", "add", f"{self.address}/30", "dev", inner, namespace=self.namespace)
        run_ip("link", "set", inner, "up", namespace=self.namespace)
        run_ip("link", "set", "lo", "up", namespace=self.namespace)

    def delete_namespace(self) -> None:
        """Deleting the namespace deletes its end of the link, and with it the host's end."""
        if Path("/run/netns", self.namespace).exists():
            subprocess.run(["ip", "netns", "delete", self.namespace], check=False, capture_output=True)
        if Path("/sys/class/net", self.host_link).exists():
            subprocess.run(["ip", "link", "delete", self.host_link], check=False, capture_output=True)

    def start(self) -> None:
        self.create_namespace()
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
        self.delete_namespace()


def copy_image(source: docker.DockerClient, target: docker.DockerClient, name: str) -> None:
    """`docker save NAME | docker -H TARGET load`: there is no registry to pull from."""
    data = b"".join(source.images.get(name).save(named=True))
    target.images.load(data)
