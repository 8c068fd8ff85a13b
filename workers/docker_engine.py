"""The one place that talks to the Docker engine (through the Docker SDK).

Containers are identified by id and found by compose's labels, never by name: every rollout bumps
the container number, and a name says nothing about which release a container runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import docker.utils
import requests

from workers.rollout.planner import ContainerInfo

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
NUMBER_LABEL = "com.docker.compose.container-number"
COMPOSE_VERSION_LABEL = "com.docker.compose.version"

#: Docker's own healthcheck defaults, used when a healthcheck leaves a field unset (nanoseconds = 0).
DOCKER_HEALTH_INTERVAL_SECONDS = 30.0
DOCKER_HEALTH_TIMEOUT_SECONDS = 30.0
DOCKER_HEALTH_RETRIES = 3
#: A drain command that hangs must not hold the rollout; its container is stopped afterwards anyway.
EXEC_TIMEOUT_SECONDS = 30.0
#: An engine that answers at all answers a ping within milliseconds; a slow ssh link may take seconds.
PROBE_TIMEOUT_SECONDS = 5.0
#: How often to ask an engine that went away whether it is back.
ENGINE_POLL_SECONDS = 0.5

_NANOSECONDS = 1_000_000_000


@dataclass(frozen=True)
class ContainerState:
    """A fresh look at one container, for the health gate and for draining."""

    id: str
    name: str
    #: created | running | paused | restarting | removing | exited | dead
    status: str
    #: starting | healthy | unhealthy; None when the container has no healthcheck.
    health: str | None
    exit_code: int
    restart_count: int
    #: The engine's error for a container that could not start (e.g. "port is already allocated").
    error: str
    #: Output of the most recent health probe.
    last_probe: str
    #: Longest time a healthy container takes to be reported unhealthy once its probe starts failing.
    unhealthy_within: float
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None
    output: str
    timed_out: bool = False


def client_for(docker_host: str | None, timeout: float | None = None) -> docker.DockerClient:
    """An SDK client for `docker_host` (`unix://`, `tcp://`, `ssh://`), else for what `$DOCKER_HOST` names."""
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if docker_host:
        if docker_host.startswith("tcp://"):
            # TLS as the docker CLI and compose take it from the worker's environment (DOCKER_TLS_VERIFY,
            # DOCKER_CERT_PATH): `from_env` would read it, an explicit base_url does not.
            tls = docker.utils.kwargs_from_env().get("tls")
            if tls is not None:
                kwargs["tls"] = tls
        # The ssh binary honours ~/.ssh/config and agents, as the docker CLI and compose do (the SDK's
        # own ssh transport would need paramiko, and ignores both).
        return docker.DockerClient(base_url=docker_host, use_ssh_client=docker_host.startswith("ssh://"), **kwargs)
    return docker.from_env(**kwargs)


def is_connection_failure(exc: BaseException) -> bool:
    """Whether `exc` says the engine could not be reached (refused, reset, timed out), not what it answered."""
    if isinstance(exc, docker.errors.APIError):
        return False
    return isinstance(exc, requests.exceptions.RequestException | docker.errors.DockerException)


class DockerEngine:
    """A thin, typed wrapper over one Docker SDK client."""

    def __init__(self, client: docker.DockerClient, docker_host: str | None = None) -> None:
        self.client = client
        self.docker_host = docker_host

    @classmethod
    def connect(cls, docker_host: str | None = None) -> DockerEngine:
        """The engine at `docker_host` (e.g. `ssh://deploy@app1`), else the one `$DOCKER_HOST` names."""
        return cls(client_for(docker_host), docker_host)

    def close(self) -> None:
        self.client.close()

    def answers(self, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
        """Whether the engine answers a ping on a new connection now.

        A new connection, because an engine that is shutting down closes its listening socket first
        and goes on serving the connections it has, such as this client's kept-alive one.
        """
        try:
            probe = client_for(self.docker_host, timeout=timeout)
        except Exception:  # noqa: BLE001 - a probe answers yes or no (a missing ssh binary is a no)
            return False
        try:
            return bool(probe.ping())
        except Exception:  # noqa: BLE001 - as above
            return False
        finally:
            probe.close()

    def wait_until_answers(self, patience: float) -> bool:
        """Poll `answers` for up to `patience` seconds; whether the engine answered."""
        deadline = time.monotonic() + patience
        while not self.answers():
            if time.monotonic() >= deadline:
                return False
            time.sleep(ENGINE_POLL_SECONDS)
        return True

    def containers(self, project: str, service: str | None = None) -> list[ContainerInfo]:
        """All containers of a project (or one service), stopped and never-started ones included.

        One-off containers (`compose run`) are skipped: they are nobody's replicas.
        """
        labels = [f"{PROJECT_LABEL}={project}"]
        if service is not None:
            labels.append(f"{SERVICE_LABEL}={service}")
        found: list[ContainerInfo] = []
        for summary in self.client.api.containers(all=True, filters={"label": labels}):
            info = container_info(summary)
            if info is not None:
                found.append(info)
        found.sort(key=lambda c: (c.service, c.number, c.id))
        return found

    def oneoff_containers(self, project: str) -> dict[str, str]:
        """Name -> id of the project's one-off containers (`compose run`), whatever their state."""
        labels = [f"{PROJECT_LABEL}={project}", f"{ONEOFF_LABEL}=True"]
        return {str((c.get("Names") or [c["Id"]])[0]).lstrip("/"): str(c["Id"])
                for c in self.client.api.containers(all=True, filters={"label": labels})}

    def state(self, container_id: str) -> ContainerState | None:
        """The container's current state, or None when it no longer exists."""
        try:
            attrs = self.client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        return container_state(attrs)

    def image_id(self, name: str) -> str | None:
        """The id of a local image, or None when there is no such image."""
        try:
            return str(self.client.api.inspect_image(name)["Id"])
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.NotFound:
            return None

    def tag(self, image_id: str, name: str) -> None:
        """Point the tag `name` (`repo[:tag]`, `latest` when none) at the local image `image_id`."""
        repository, tag = split_image_name(name)
        self.client.api.tag(image_id, repository, tag, force=True)

    def logs_tail(self, container_id: str, lines: int) -> list[str]:
        """The last `lines` lines of a container's stdout and stderr (empty if it is gone)."""
        try:
            raw = self.client.api.logs(container_id, stdout=True, stderr=True, tail=lines)
        except docker.errors.NotFound:
            return []
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return text.splitlines()[-lines:]

    def exec(self, container_id: str, argv: Sequence[str], timeout: float = EXEC_TIMEOUT_SECONDS) -> ExecResult:
        """Run `argv` inside a running container; a command still running after `timeout` is left behind."""
        try:
            exec_id = self.client.api.exec_create(container_id, list(argv), stdout=True, stderr=True)["Id"]
        except docker.errors.APIError as exc:
            return ExecResult(exit_code=None, output=_api_error_text(exc))
        output: list[bytes] = []
        failure: list[str] = []

        def start() -> None:
            try:
                output.append(self.client.api.exec_start(exec_id))
            except docker.errors.APIError as exc:
                failure.append(_api_error_text(exc))

        # The SDK's exec_start has no timeout of its own; a thread bounds how long we wait.
        worker = threading.Thread(target=start, name=f"exec-{container_id[:12]}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            return ExecResult(exit_code=None, output="", timed_out=True)
        if failure:
            return ExecResult(exit_code=None, output=failure[0])
        text = b"".join(output).decode("utf-8", "replace")
        code = self.client.api.exec_inspect(exec_id).get("ExitCode")
        return ExecResult(exit_code=int(code) if code is not None else None, output=text)

    def stop(self, container_id: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; a container already gone is fine."""
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.stop(container_id, timeout=max(0, round(grace)))

    def remove(self, container_id: str) -> None:
        """Remove a container with its anonymous volumes (`v=True`: they leak otherwise)."""
        try:
            self.client.api.remove_container(container_id, v=True, force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            # Another remover got there first (e.g. `compose down` by hand): the outcome is the same.
            if exc.status_code == 409 and "in progress" in _api_error_text(exc):
                return
            raise

    def project_container_ids(self, project: str) -> list[str]:
        """Ids of every container of a compose project, one-off ones included, whatever their state."""
        return [str(c["Id"]) for c in self.client.api.containers(all=True,
                                                                 filters={"label": f"{PROJECT_LABEL}={project}"})]

    # ---- networks and volumes ----

    def project_networks(self, project: str) -> list[str]:
        """Names of the networks compose created for a project."""
        return sorted(str(n["Name"]) for n in self.client.api.networks(filters={"label": f"{PROJECT_LABEL}={project}"}))

    def remove_network(self, name: str) -> str | None:
        """Remove a network; None when done (or gone), else the engine's reason."""
        return _refusal(lambda: self.client.api.remove_network(name))

    def project_volumes(self, project: str) -> list[str]:
        """Names of the volumes compose created for a project."""
        found = self.client.api.volumes(filters={"label": f"{PROJECT_LABEL}={project}"}).get("Volumes") or []
        return sorted(str(v["Name"]) for v in found)

    def remove_volume(self, name: str) -> str | None:
        """Remove a volume; None when done (or gone), else the engine's reason."""
        return _refusal(lambda: self.client.api.remove_volume(name))

    # ---- images ----

    def images(self, *, reference: str | None = None, label: str | None = None,
               dangling: bool = False) -> list[Mapping[str, Any]]:
        """Summaries (Id, RepoTags, Size, Labels) of local images matching every filter given."""
        filters: dict[str, Any] = {}
        if reference is not None:
            filters["reference"] = reference
        if label is not None:
            filters["label"] = label
        if dangling:
            filters["dangling"] = True
        return list(self.client.api.images(filters=filters))

    def images_in_use(self) -> set[str]:
        """Ids of the images any container on the engine was created from, stopped ones included."""
        return {str(c.get("ImageID", "")) for c in self.client.api.containers(all=True)}

    def remove_image(self, reference: str) -> str | None:
        """Remove a tag (the image goes with its last tag) or an untagged image by id, never forced.

        Returns None when done (or already gone), else the engine's reason (e.g. a container uses it).
        """
        return _refusal(lambda: self.client.api.remove_image(reference, force=False, noprune=False))


def container_info(summary: Mapping[str, Any]) -> ContainerInfo | None:
    """A ContainerInfo from one entry of the engine's container list; None for one-off containers."""
    labels: dict[str, str] = dict(summary.get("Labels") or {})
    if labels.get(ONEOFF_LABEL, "False").lower() == "true":
        return None
    names = summary.get("Names") or []
    name = str(names[0]).lstrip("/") if names else str(summary["Id"])[:12]
    try:
        number = int(labels.get(NUMBER_LABEL, "0"))
    except ValueError:
        number = 0
    return ContainerInfo(
        id=str(summary["Id"]),
        name=name,
        service=labels.get(SERVICE_LABEL, ""),
        state=str(summary.get("State", "")),
        config_hash=labels.get(CONFIG_HASH_LABEL, ""),
        image_id=str(summary.get("ImageID", "")),
        compose_version=labels.get(COMPOSE_VERSION_LABEL, ""),
        number=number,
        labels=labels,
    )


def container_state(attrs: Mapping[str, Any]) -> ContainerState:
    """A ContainerState from `docker inspect` output."""
    state = attrs.get("State") or {}
    health = state.get("Health") or None
    config = attrs.get("Config") or {}
    probes = (health or {}).get("Log") or []
    last_probe = str(probes[-1].get("Output", "")).strip() if probes else ""
    return ContainerState(
        id=str(attrs["Id"]),
        name=str(attrs.get("Name", "")).lstrip("/"),
        status=str(state.get("Status", "")),
        health=str(health["Status"]) if health else None,
        exit_code=int(state.get("ExitCode") or 0),
        restart_count=int(attrs.get("RestartCount") or 0),
        error=str(state.get("Error") or ""),
        last_probe=last_probe,
        unhealthy_within=unhealthy_within(config.get("Healthcheck")),
        labels=dict(config.get("Labels") or {}),
    )


def unhealthy_within(healthcheck: Mapping[str, Any] | None) -> float:
    """Seconds after which a failing probe has turned a healthy container `unhealthy` at the latest.

    Docker needs `retries` consecutive failures, each taking up to `timeout`, `interval` apart.
    """
    if not healthcheck or (healthcheck.get("Test") or ["NONE"])[0] == "NONE":
        return 0.0
    interval = (healthcheck.get("Interval") or 0) / _NANOSECONDS or DOCKER_HEALTH_INTERVAL_SECONDS
    timeout = (healthcheck.get("Timeout") or 0) / _NANOSECONDS or DOCKER_HEALTH_TIMEOUT_SECONDS
    retries = int(healthcheck.get("Retries") or 0) or DOCKER_HEALTH_RETRIES
    return float(interval + (interval + timeout) * retries)


def _refusal(remove: Callable[[], object]) -> str | None:
    """Run a removal: None when done or the thing was gone already, else the engine's reason."""
    try:
        remove()
    except docker.errors.NotFound:  # ImageNotFound included
        return None
    except docker.errors.APIError as exc:
        return _api_error_text(exc)
    return None


def _api_error_text(exc: docker.errors.APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def split_image_name(name: str) -> tuple[str, str]:
    """`registry:5000/app:v1` → (`registry:5000/app`, `v1`); no tag means `latest`. A digest is not a tag."""
    name = name.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"
