"""The stack file of a swarm deployment, planned from the release's compose model (pure).

`docker stack deploy` ignores `build:`, and a service whose image name did not change is not
updated even when the image behind the name was rebuilt. So every built image gets a tag unique to
the release (`release_tag`), and the stack file names those tags instead of `build:`. With a
`registry` the names are the registry's, so every node can pull them.

`plan_stack` also adds what zero downtime needs where the file sets nothing: updates that start the
new task before stopping the old one (`order: start-first`) and are rolled back by Swarm when a new
task fails (`failure_action: rollback`), and a rollback that starts before it stops too. A file that
cannot work on this swarm is refused with every problem and how to fix it, before anything is built
or changed (`StackRefused`).

The compose model (`compose config`) is written in the Compose Specification, which the stack file
loader (version 3 of the format) reads only in part: `to_stack_document` translates what compose
prints that the loader would refuse.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hooksvc.errors import DeployError
from workers.docker_engine import split_image_name
from workers.rollout.model import named_volumes, parse_go_duration

#: The stack file format the generated file declares: read by Docker's CLI since 19.03.
STACK_FILE_VERSION = "3.8"
#: What Swarm does without an `update_config`: it waits this long after each updated task for it to fail.
SWARM_DEFAULT_MONITOR_SECONDS = 5.0
#: A release tag: 12 hex digits of the commit and the deployment id (`3f2a9c41d0e7-118`).
RELEASE_TAG = re.compile(r"([0-9a-f]{12})-(\d+)")


class StackRefused(DeployError):
    """The compose files cannot work as a stack on this swarm; nothing was built or changed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("the stack cannot be deployed as it is:\n" + "\n".join(f"- {p}" for p in problems))


@dataclass(frozen=True)
class ReleaseImage:
    """A built service's image: the name compose builds it under, and the release name the stack runs."""

    service: str
    built: str
    release: str

    @property
    def repository(self) -> str:
        return split_image_name(self.release)[0]


@dataclass(frozen=True)
class ServiceRollout:
    """What waiting for one stack service needs to know."""

    service: str
    #: Tasks it runs; None for a global service (one per node).
    replicas: int | None
    #: Seconds its update (or first start) may take: `health_timeout` and Swarm's own waits per batch.
    bound: float
    #: Seconds a rollback of its update may take, by the same measure.
    rollback_bound: float = 0.0


@dataclass(frozen=True)
class StackPlan:
    stack: str
    #: The stack file: the compose model with release image names, no `build:`, update settings added.
    document: dict[str, Any]
    images: tuple[ReleaseImage, ...]
    services: tuple[ServiceRollout, ...]
    #: One line per change hooksvc made to the file, for the deployment log.
    notes: tuple[str, ...]


def release_tag(sha: str, deployment_id: str) -> str:
    """The tag of a release's images: unique per deployment, and it says which commit it holds."""
    return f"{sha[:12]}-{deployment_id}"


def names_registry(image: str) -> str | None:
    """The registry host an image name starts with (`ghcr.io/acme/web` → `ghcr.io`), or None."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def release_repository(image: str, registry: str | None) -> str:
    """The repository a built image is tagged and pushed under: its name without tag, in `registry`."""
    repository = split_image_name(image)[0]
    if registry is None or names_registry(repository) == registry:
        return repository
    return f"{registry}/{repository}"


# ---- reading the compose model ------------------------------------------------------------------

def _deploy(config: Mapping[str, Any]) -> Mapping[str, Any]:
    deploy = config.get("deploy")
    return deploy if isinstance(deploy, Mapping) else {}


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = _deploy(config).get(name)
    return section if isinstance(section, Mapping) else {}


def stack_replicas(config: Mapping[str, Any]) -> int | None:
    """Tasks a service runs: `deploy.replicas` (default 1), or None for `deploy.mode: global`."""
    deploy = _deploy(config)
    if str(deploy.get("mode") or "replicated") == "global":
        return None
    replicas = deploy.get("replicas")
    return int(replicas) if isinstance(replicas, int | str) and str(replicas).isdigit() else 1


@dataclass(frozen=True)
class PublishedPort:
    published: str
    target: str
    mode: str
    host_ip: str


def published_ports(config: Mapping[str, Any]) -> Iterator[PublishedPort]:
    """The ports a service publishes, long syntax (compose v2) or short (`[ip:]published:target`)."""
    for port in config.get("ports") or []:
        if isinstance(port, Mapping):
            published, host_ip = str(port.get("published") or ""), str(port.get("host_ip") or "")
            if published or host_ip:
                yield PublishedPort(published, str(port.get("target") or ""), str(port.get("mode") or "ingress"),
                                    host_ip)
            continue
        text = str(port).split("/", 1)[0]
        parts = text.rsplit(":", 2)
        if len(parts) == 3 or (len(parts) == 2 and parts[0]):
            yield PublishedPort(parts[-2], parts[-1], "ingress", parts[0] if len(parts) == 3 else "")


def bind_sources(config: Mapping[str, Any]) -> list[str]:
    """Host paths a service bind-mounts (long syntax, or `source:target[:mode]`)."""
    sources: list[str] = []
    for volume in config.get("volumes") or []:
        if isinstance(volume, Mapping):
            if volume.get("type") == "bind" and volume.get("source"):
                sources.append(str(volume["source"]))
        elif str(volume).startswith("/") and ":" in str(volume):
            sources.append(str(volume).split(":", 1)[0])
    return sources


def _duration(section: Mapping[str, Any], key: str, default: float) -> float:
    value = parse_go_duration(section.get(key))
    return default if value is None else value


def rollout_bound(config: Mapping[str, Any], health_timeout: float, nodes: int,
                  section: str = "update_config") -> float:
    """Seconds a service's update (or, with `section="rollback_config"`, its rollback) may take: per batch
    of `parallelism` tasks, the health timeout, Swarm's `monitor` period and `delay`; a first start
    takes one batch."""
    update = _section(config, section)
    tasks = stack_replicas(config) or max(nodes, 1)
    parallelism = update.get("parallelism", 1)
    per_batch = int(parallelism) if isinstance(parallelism, int | str) and str(parallelism).isdigit() else 1
    batches = 1 if per_batch == 0 else math.ceil(max(tasks, 1) / per_batch)
    monitor = _duration(update, "monitor", SWARM_DEFAULT_MONITOR_SECONDS)
    return batches * (health_timeout + monitor + _duration(update, "delay", 0.0))


# ---- the plan -------------------------------------------------------------------------------------

def plan_stack(
    model: Mapping[str, Any],
    *,
    stack: str,
    tag: str,
    registry: str | None,
    nodes: int,
    health_timeout: float,
    built_name: Callable[[str, Mapping[str, Any]], str],
    release_dir: str = "",
) -> StackPlan:
    """The stack file for a release, or StackRefused listing every reason it cannot work.

    `model` is the compose model (`compose config`), `tag` the release tag, `nodes` the swarm's
    nodes that take tasks, `built_name(service, config)` the name compose builds a service's
    image under (`workers.compose.ComposeProject.image_name`), and `release_dir` the checkout the
    compose files were read from (relative bind mounts point into it).
    """
    services: Mapping[str, Mapping[str, Any]] = model.get("services") or {}
    problems: list[str] = []
    notes: list[str] = []
    images: list[ReleaseImage] = []
    built = sorted(name for name, config in services.items() if "build" in config)
    if built and registry is None and nodes > 1:
        problems.append(
            f"the swarm has {nodes} nodes, and only this one has the images built here "
            f"({', '.join(built)}): set registry = \"HOST:PORT\" for the app, so every node pulls them from there"
        )
    for name in built:
        config = services[name]
        image = config.get("image")
        if registry is not None and not (isinstance(image, str) and image):
            problems.append(
                f"service {name} is built but names no image: with a registry, the image name is what it is "
                f"pushed as; give it one, e.g. `image: {stack}/{name}` (pushed as {registry}/{stack}/{name})"
            )
            continue
        source = built_name(name, config)
        other = names_registry(source)
        if registry is not None and other is not None and other != registry:
            problems.append(
                f"service {name}: its image {source} names the registry {other}, but the app pushes to "
                f"{registry}: name the image without a registry (or with {registry}/)"
            )
            continue
        images.append(ReleaseImage(name, source, f"{release_repository(source, registry)}:{tag}"))
    document = to_stack_document(model, stack)
    rollouts: list[ServiceRollout] = []
    for name in sorted(services):
        config = document["services"][name]
        defaulted = "order" not in _section(config, "update_config")
        notes += _add_update_settings(name, config)
        problems += _port_problems(name, config, nodes, defaulted)
        if nodes > 1 and release_dir:
            problems += [
                f"service {name}: it mounts {source} from the release's checkout, which only this machine has, "
                f"but the swarm has {nodes} nodes: copy the files into the image, or use a volume"
                for source in bind_sources(config) if source == release_dir or source.startswith(f"{release_dir}/")
            ]
        rollouts.append(ServiceRollout(name, stack_replicas(config), rollout_bound(config, health_timeout, nodes),
                                       rollout_bound(config, health_timeout, nodes, "rollback_config")))
    if problems:
        raise StackRefused(problems)
    for image in images:
        document["services"][image.service]["image"] = image.release
    return StackPlan(stack=stack, document=document, images=tuple(images), services=tuple(rollouts),
                     notes=tuple(notes))


def _port_problems(name: str, config: Mapping[str, Any], nodes: int, defaulted: bool) -> list[str]:
    """Ports Swarm cannot publish as the file asks; `defaulted`: hooksvc chose the update order."""
    problems: list[str] = []
    replicas = stack_replicas(config)
    for port in published_ports(config):
        where = f"service {name}: port {port.published}"
        if port.host_ip:
            problems.append(
                f"{where} is published on {port.host_ip} only, which Swarm cannot do (it publishes on every "
                f"address of a node): remove the address, or publish the port through a proxy"
            )
        if port.mode != "host" or not port.published.isdigit():
            continue
        if replicas is not None and replicas > nodes:
            problems.append(
                f"{where} is published in host mode, which one task per node can bind, but {replicas} replicas "
                f"run on {nodes} node(s): lower deploy.replicas to {nodes}, or publish the port in ingress mode"
            )
        for section in ("update_config", "rollback_config"):
            order = str(_section(config, section).get("order") or "")
            if order == "start-first" and (replicas is None or replicas >= nodes):
                why = " (hooksvc's default where the file sets no order)" if defaulted else ""
                problems.append(
                    f"{where} is published in host mode, and {section}.order is start-first{why}: the new task "
                    f"starts while the old one still holds the port, and on {nodes} node(s) no node is free, "
                    f"so it never starts. Set deploy.{section}.order: stop-first for {name} (a short gap while "
                    f"its task restarts), publish the port in ingress mode, or run more nodes than replicas"
                )
                break  # the rollback's order follows the update's unless the file sets it
    return problems


def _add_update_settings(name: str, config: dict[str, Any]) -> list[str]:
    """Start-first updates rolled back on failure, and a rollback in the same order, where the file sets none.

    A service on a named volume (a database) gets stop-first: two tasks must not share its data, as the
    rolling strategy never runs two containers of it. A service publishing a host-mode port gets
    stop-first only when the file says so: `_port_problems` refuses it otherwise, with the fix.
    """
    deploy = config.setdefault("deploy", {})
    update = deploy.setdefault("update_config", {})
    rollback = deploy.setdefault("rollback_config", {})
    added: list[str] = []
    volumes = named_volumes(config)
    if "order" not in update and volumes:
        update["order"] = "stop-first"
        added.append(f"update_config.order: stop-first (it mounts the named volume {volumes[0]!r}, which "
                     "two tasks must not share)")
    elif "order" not in update:
        update["order"] = "start-first"
        added.append("update_config.order: start-first")
    if "failure_action" not in update:
        update["failure_action"] = "rollback"
        added.append("update_config.failure_action: rollback")
    if "order" not in rollback:
        rollback["order"] = update["order"]
        added.append(f"rollback_config.order: {update['order']}")
    if not added:
        return []
    return [f"{name}: added deploy.{', deploy.'.join(added)} (the file sets none)"]


# ---- the compose model as a version 3 stack file ----------------------------------------------------

def to_stack_document(model: Mapping[str, Any], stack: str) -> dict[str, Any]:
    """The compose model as a stack file the CLI's loader accepts; `build:` is left out.

    Compose v2 prints the Compose Specification: null for unset keys, `depends_on` as a mapping, port
    numbers as strings, bind options the format 3 schema does not know, and the project's `name` with
    the names it gave networks and volumes (`<project>_<key>`, which the stack names the same way).
    """
    document: dict[str, Any] = {"version": STACK_FILE_VERSION}
    for key, value in model.items():
        if key in ("version", "name", "services"):
            continue
        if key in ("networks", "volumes", "secrets", "configs") and isinstance(value, Mapping):
            document[key] = {k: _top_level_entry(stack, k, v) for k, v in value.items()}
        else:
            document[key] = copy.deepcopy(value)
    services = model.get("services") or {}
    document["services"] = {name: _stack_service(config) for name, config in services.items()}
    return document


def _top_level_entry(stack: str, key: str, entry: object) -> object:
    if not isinstance(entry, Mapping):
        return entry
    result = {k: copy.deepcopy(v) for k, v in entry.items() if v is not None}
    if result.get("name") == f"{stack}_{key}" and not result.get("external"):
        del result["name"]  # the name compose gave it, which the stack gives it too
    return result


def _stack_service(config: Mapping[str, Any]) -> dict[str, Any]:
    service = {k: copy.deepcopy(v) for k, v in config.items() if v is not None and k != "build"}
    depends = service.get("depends_on")
    if isinstance(depends, Mapping):
        service["depends_on"] = sorted(depends)
    ports = service.get("ports")
    if isinstance(ports, list):
        service["ports"] = [_stack_port(p) for p in ports]
    volumes = service.get("volumes")
    if isinstance(volumes, list):
        service["volumes"] = [_stack_volume(v) for v in volumes]
    return service


def _stack_port(port: object) -> object:
    if not isinstance(port, Mapping):
        return port
    result = {k: v for k, v in port.items() if v is not None and v != ""}
    for key in ("published", "target"):
        if isinstance(result.get(key), str) and result[key].isdigit():
            result[key] = int(result[key])
    return result


def _stack_volume(volume: object) -> object:
    if not isinstance(volume, Mapping):
        return volume
    result = {k: v for k, v in volume.items() if v is not None}
    bind = result.get("bind")
    if isinstance(bind, Mapping):
        # `create_host_path` is compose's own (always true for a short-syntax bind); Swarm never creates it.
        bind = {k: v for k, v in bind.items() if k == "propagation"}
        if bind:
            result["bind"] = bind
        else:
            del result["bind"]
    return result
