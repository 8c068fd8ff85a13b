"""The quickstart: what `hooksvc run` (and `scripts/run`) starts when given no configuration.

Everything lives in one state folder, `.hooksvc-quickstart/` in the directory it is started from
(scripts/run starts it in the checkout), and is made on the first start only, so a second start
finds the same repository, secrets, token and ports:

    config.toml         an ordinary hooksvc configuration: read it to see how the demo is wired
    demo.git            a bare repository holding the example app; its post-receive hook deploys
    api-token           the dashboard's and API's bearer token          (mode 0600)
    webhook-secret      the secret the hook signs each push with         (mode 0600)
    ports.json          the two ports chosen on the first start
    state/              hooksvc's state_dir: private Redis, git mirror, releases
    hooksvc.log         the output of hooksvc's web, worker and proxy processes
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from hooksvc.errors import HooksvcError

STATE_DIR_NAME = ".hooksvc-quickstart"
APP_NAME = "demo"
BRANCH = "main"
#: The example's web service and the port its containers listen on.
SERVICE = "web"
SERVICE_PORT = 8080
#: Preferred ports for the dashboard and the example app; when taken on the first start, free ones are
#: chosen instead. Either way the choice is kept in ports.json.
DEFAULT_WEB_PORT = 8080
DEFAULT_APP_PORT = 8000
LOOPBACK = "127.0.0.1"

_HEALTH = f"test ! -e /tmp/drain && timeout 3 wget -q -O /dev/null http://127.0.0.1:{SERVICE_PORT}/"

#: The example app: busybox's httpd serving www/. The healthcheck and the drain label are what make a
#: rolling deployment drop no request: the new container serves only once healthy, and the old one
#: fails its healthcheck (touch /tmp/drain) and leaves the proxy before it is stopped.
EXAMPLE_FILES = {
    "Dockerfile": (
        "FROM busybox:1.36\n"
        "COPY www /www\n"
        f'CMD ["httpd", "-f", "-p", "{SERVICE_PORT}", "-h", "/www"]\n'
    ),
    "docker-compose.yml": (
        "services:\n"
        f"  {SERVICE}:\n"
        "    build: .\n"
        "    init: true\n"
        "    ports:\n"
        f'      - "127.0.0.1::{SERVICE_PORT}"   # any free port: old and new containers run side by side\n'
        "    labels:\n"
        '      hooksvc.drain: "touch /tmp/drain"   # fails the healthcheck: the proxy stops routing here\n'
        '      hooksvc.drain_seconds: "0.3"   # the demo proxy re-reads health every 0.1 s\n'
        "    stop_grace_period: 3s\n"
        "    healthcheck:\n"
        f'      test: ["CMD", "sh", "-c", "{_HEALTH}"]\n'
        "      interval: 250ms   # healthy, and out of the proxy once drained, within a fraction of a second\n"
        "      timeout: 3s\n"
        "      retries: 2\n"
        "      start_period: 5s\n"
    ),
    "www/index.html": (
        "<!doctype html>\n<title>hooksvc demo</title>\n"
        "<h1>Hello from version 1</h1>\n"
        "<p>Edit www/index.html, commit, and git push: hooksvc deploys it without dropping a request.</p>\n"
    ),
}


@dataclass(frozen=True)
class Quickstart:
    folder: Path
    web_port: int
    app_port: int
    token: str

    @property
    def config_path(self) -> Path:
        return self.folder / "config.toml"

    @property
    def repository(self) -> Path:
        return self.folder / f"{APP_NAME}.git"

    @property
    def log_path(self) -> Path:
        return self.folder / "hooksvc.log"

    @property
    def project(self) -> str:
        """A compose project name of this folder's own, so two checkouts' demos never meet."""
        return "quickstart-" + hashlib.sha256(str(self.folder).encode()).hexdigest()[:8]

    @property
    def dashboard_url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}/"

    @property
    def app_url(self) -> str:
        return f"http://{LOOPBACK}:{self.app_port}/"

    def lines(self) -> list[str]:
        """What the quickstart prints once it serves."""
        return [f"repo: {self.repository}", f"app: {self.app_url}", f"dashboard: {self.dashboard_url}",
                f"token: {self.token}"]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers themselves bind: connections of a stopped server in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _free_port(preferred: int, taken: set[int]) -> int:
    if preferred not in taken and port_free(preferred):
        return preferred
    while True:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port


def _private_secret(path: Path, nbytes: int) -> str:
    """The secret kept in `path` (mode 0600), made on first use."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(nbytes) + "\n")
    path.chmod(0o600)
    return path.read_text().strip()


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def config_text(qs: Quickstart) -> str:
    d = qs.folder
    return f"""\
# The quickstart's configuration, written by `hooksvc run` at each start without one. It is an ordinary
# hooksvc configuration (config.example.toml documents every key): a plain git host whose bare
# repository's post-receive hook deploys the example app on every push.

[server]
listen = "{LOOPBACK}:{qs.web_port}"
public_url = "http://{LOOPBACK}:{qs.web_port}"
api_tokens_file = {_toml(str(d / "api-token"))}

[worker]
state_dir = {_toml(str(d / "state"))}

[hosts.local]
kind = "git"

[apps.{APP_NAME}]
host = "local"
clone_url = {_toml(str(qs.repository))}
branch = "{BRANCH}"
secret_file = {_toml(str(d / "webhook-secret"))}
project = "{qs.project}"
health_timeout = "60s"
"""


def prepare(directory: Path) -> Quickstart:
    """The quickstart's state folder in `directory`: made on the first start, read on later ones.

    The example repository is made by the caller (it needs git): `Quickstart.repository`.
    """
    folder = (directory / STATE_DIR_NAME).resolve()
    folder.mkdir(mode=0o700, exist_ok=True)
    token = _private_secret(folder / "api-token", 16)
    _private_secret(folder / "webhook-secret", 32)
    ports_file = folder / "ports.json"
    if ports_file.exists():
        try:
            ports = json.loads(ports_file.read_text())
            web_port, app_port = int(ports["dashboard"]), int(ports["app"])
        except (ValueError, KeyError, TypeError) as exc:
            raise HooksvcError(f"{ports_file} is damaged ({exc}): delete it to choose ports again") from None
    else:
        web_port = _free_port(DEFAULT_WEB_PORT, set())
        app_port = _free_port(DEFAULT_APP_PORT, {web_port})
        ports_file.write_text(json.dumps({"dashboard": web_port, "app": app_port}) + "\n")
    qs = Quickstart(folder=folder, web_port=web_port, app_port=app_port, token=token)
    qs.config_path.write_text(config_text(qs))  # written anew each start: it follows ports.json
    for what, port in (("dashboard", web_port), ("app", app_port)):
        if not port_free(port):
            raise HooksvcError(
                f"port {port} on {LOOPBACK} (the quickstart's {what}, kept in {ports_file}) is in use: stop what "
                f"listens there (another hooksvc quickstart?), or delete {ports_file} to choose free ports")
    return qs
