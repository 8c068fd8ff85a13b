"""The one place that talks to Docker Swarm (through the Docker SDK): nodes, stack services, tasks,
and pushing release images to a registry.

Services and tasks are read as typed snapshots (`ServiceState`, `TaskState`) that the swarm strategy
decides on; what they mean is documented at `workers/strategies/swarm.py`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import docker.errors

from workers.docker_engine import DockerEngine, split_image_name

#: The label `docker stack deploy` puts on every service (and network) of a stack.
STACK_LABEL = "com.docker.stack.namespace"


@dataclass(frozen=True)
class SwarmInfo:
    #: inactive | pending | active | error | locked
    state: str
    #: True on a manager: only a manager can deploy a stack.
    manager: bool
    #: Nodes that take tasks: ready and with availability `active`.
    nodes: int
    error: str = ""


@dataclass(frozen=True)
class ServiceState:
    """One look at a stack service."""

    id: str
    name: str
    #: The spec's version: changes with every update of the service.
    version: int
    #: The image the spec runs now (after an automatic rollback: the previous one again).
    image: str
    #: Desired tasks; None for a global service.
    replicas: int | None
    #: updating | paused | completed | rollback_started | rollback_paused | rollback_completed, or ""
    #: while no update ran since the spec last changed (a new service, or nothing to replace).
    update_state: str
    update_message: str
    #: What makes a task current: its container spec and the spec's force-update counter.
    container_spec: Mapping[str, Any]
    force_update: int
    #: The whole spec: a deploy that re-sends a service unchanged leaves it equal (its version still moves).
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskState:
    id: str
    slot: int
    node: str
    #: What the orchestrator wants: running | shutdown | ...
    desired: str
    #: new | pending | assigned | accepted | preparing | starting | running | complete | shutdown |
    #: failed | rejected | orphaned | remove
    state: str
    message: str
    error: str
    container_id: str
    image: str
    timestamp: str
    container_spec: Mapping[str, Any]
    force_update: int
    #: The exit code of the task's container, once it exited (None before, or without a container).
    exit_code: int | None = None

    def runs(self, service: ServiceState) -> bool:
        """True when this task was made from the service's current spec."""
        return self.container_spec == service.container_spec and self.force_update == service.force_update


class SwarmEngine(DockerEngine):
    """A Docker engine that is (or should be) a Swarm manager."""

    @classmethod
    def connect(cls, docker_host: str | None = None) -> SwarmEngine:
        return cls(DockerEngine.connect(docker_host).client)

    def swarm(self) -> SwarmInfo:
        info = self.client.info().get("Swarm") or {}
        manager = bool(info.get("ControlAvailable"))
        nodes = 0
        if manager:
            for node in self.client.api.nodes():
                status = (node.get("Status") or {}).get("State")
                availability = (node.get("Spec") or {}).get("Availability")
                nodes += status == "ready" and availability == "active"
        return SwarmInfo(state=str(info.get("LocalNodeState") or "inactive"), manager=manager, nodes=nodes,
                         error=str(info.get("Error") or ""))

    def services(self, stack: str) -> dict[str, ServiceState]:
        """The stack's services by their name in the stack file (`web`, not `shop_web`)."""
        found: dict[str, ServiceState] = {}
        for attrs in self.client.api.services(filters={"label": f"{STACK_LABEL}={stack}"}):
            state = service_state(attrs)
            found[state.name.removeprefix(f"{stack}_")] = state
        return found

    def service(self, name_or_id: str) -> ServiceState | None:
        try:
            return service_state(self.client.api.inspect_service(name_or_id))
        except docker.errors.NotFound:
            return None

    def tasks(self, service_id: str) -> list[TaskState]:
        """The service's tasks, newest first (Swarm keeps a few finished ones per slot)."""
        tasks = [task_state(t) for t in self.client.api.tasks(filters={"service": service_id})]
        return sorted(tasks, key=lambda t: t.timestamp, reverse=True)

    def task(self, task_id: str) -> TaskState | None:
        try:
            return task_state(self.client.api.inspect_task(task_id))
        except docker.errors.NotFound:
            return None

    def remove_service(self, service_id: str) -> None:
        try:
            self.client.api.remove_service(service_id)
        except docker.errors.NotFound:
            return

    def service_spec(self, name_or_id: str) -> dict[str, Any] | None:
        """The service's spec as the engine holds it (None once it is gone): enough to create it again."""
        try:
            return dict(self.client.api.inspect_service(name_or_id).get("Spec") or {})
        except docker.errors.NotFound:
            return None

    def create_service(self, spec: Mapping[str, Any]) -> str:
        """Create a service from a spec `service_spec` read; its id."""
        created = self.client.api.create_service(
            dict(spec["TaskTemplate"]), name=spec.get("Name"), labels=spec.get("Labels"), mode=spec.get("Mode"),
            update_config=spec.get("UpdateConfig"), rollback_config=spec.get("RollbackConfig"),
            endpoint_spec=spec.get("EndpointSpec"),
        )
        return str(created["ID"])

    def labelled_services(self, stack: str, label: str) -> dict[str, str]:
        """Name -> id of the stack's services that carry `label` (whatever its value)."""
        filters = {"label": [f"{STACK_LABEL}={stack}", label]}
        return {str((s.get("Spec") or {}).get("Name", s["ID"])): str(s["ID"])
                for s in self.client.api.services(filters=filters)}

    def service_log_lines(self, service_id: str, since: int = 0) -> list[str]:
        """The service's tasks' output from `since` (a Unix time, whole seconds), each line timestamped
        (`2026-11-29T18:50:01.123456789Z text`); empty once the service is gone."""
        try:
            chunks = self.client.api.service_logs(service_id, stdout=True, stderr=True, timestamps=True,
                                                  since=since, is_tty=False)
            raw = b"".join(chunks)
        except docker.errors.NotFound:
            return []
        return raw.decode("utf-8", "replace").splitlines()

    def local_tags(self, repository: str) -> set[str]:
        """The tags of `repository` that this engine holds images for."""
        tags: set[str] = set()
        for summary in self.client.api.images(name=repository):
            for name in summary.get("RepoTags") or []:
                repo, tag = split_image_name(str(name))
                if repo == repository:
                    tags.add(tag)
        return tags

    def push(self, image: str) -> Iterator[str]:
        """Push `repository:tag` to its registry, yielding progress lines; raises DockerException on failure."""
        repository, tag = split_image_name(image)
        for event in self.client.api.push(repository, tag=tag, stream=True, decode=True):
            if event.get("error"):
                raise docker.errors.APIError(f"push of {image} failed: {event['error']}")
            if event.get("progressDetail") or event.get("progress"):
                continue  # byte counts of each layer
            line = " ".join(str(event[k]) for k in ("id", "status") if event.get(k))
            if line:
                yield line


def service_state(attrs: Mapping[str, Any]) -> ServiceState:
    spec = attrs.get("Spec") or {}
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    mode = spec.get("Mode") or {}
    replicated = mode.get("Replicated")
    update = attrs.get("UpdateStatus") or {}
    return ServiceState(
        id=str(attrs["ID"]),
        name=str(spec.get("Name", "")),
        version=int((attrs.get("Version") or {}).get("Index") or 0),
        image=str(container.get("Image", "")),
        replicas=int(replicated.get("Replicas") or 0) if isinstance(replicated, Mapping) else None,
        update_state=str(update.get("State") or ""),
        update_message=str(update.get("Message") or ""),
        container_spec=container,
        force_update=int(template.get("ForceUpdate") or 0),
        spec=spec,
    )


def task_state(attrs: Mapping[str, Any]) -> TaskState:
    status = attrs.get("Status") or {}
    spec = attrs.get("Spec") or {}
    container = spec.get("ContainerSpec") or {}
    return TaskState(
        id=str(attrs["ID"]),
        slot=int(attrs.get("Slot") or 0),
        node=str(attrs.get("NodeID") or ""),
        desired=str(attrs.get("DesiredState") or ""),
        state=str(status.get("State") or ""),
        message=str(status.get("Message") or ""),
        error=str(status.get("Err") or ""),
        container_id=str((status.get("ContainerStatus") or {}).get("ContainerID") or ""),
        image=str(container.get("Image", "")),
        timestamp=str(status.get("Timestamp") or ""),
        container_spec=container,
        force_update=int(spec.get("ForceUpdate") or 0),
        exit_code=_exit_code(status.get("ContainerStatus") or {}),
    )


def _exit_code(container_status: Mapping[str, Any]) -> int | None:
    code = container_status.get("ExitCode")
    return int(code) if isinstance(code, int) and container_status.get("ContainerID") else None
