"""What a preview changes in its pull request's compose files (pure: no Docker, no subprocess).

A preview runs the PR's own compose files plus one override file written into its checkout
(`OVERRIDE_FILE`): the services left out get a profile nobody enables, every published port is
dropped, and only the preview's service publishes, on the preview's host port (or gets the label
templates instead); the `environment` overrides go to every service. Compose reads the override
last, so its `!reset`/`!override` tags win over the PR's files (compose 2.24 and later).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hooksvc.errors import DeployError

#: The override file, written at the root of the preview's checkout (a release's checkout carries no
#: `.git`, so nothing of the repository can be named like it and be lost).
OVERRIDE_FILE = ".hooksvc-preview.yml"
#: The profile given to the services `services` leaves out: never enabled, so compose skips them.
EXCLUDED_PROFILE = "hooksvc-preview-excluded"


def kept_services(services: Mapping[str, Any], wanted: Sequence[str]) -> list[str]:
    """The services the preview runs: `wanted` (all when empty); DeployError naming any the PR lacks."""
    if not wanted:
        return list(services)
    missing = [s for s in wanted if s not in services]
    if missing:
        raise DeployError(f"previews.services names {', '.join(repr(s) for s in missing)}, which the pull "
                          f"request's compose files do not define (they define {', '.join(sorted(services))})")
    return list(wanted)


def preview_service(services: Mapping[str, Any], kept: Sequence[str], chosen: str | None) -> str:
    """The service reached at the preview's URL: `chosen`, else the first kept one with a healthcheck."""
    if chosen is not None:
        if chosen not in kept:
            raise DeployError(f"previews.service {chosen!r} is not among the services the preview runs "
                              f"({', '.join(kept)})")
        return chosen
    for name in kept:
        check = services[name].get("healthcheck")
        if isinstance(check, Mapping) and not check.get("disable") and check.get("test") not in (None, ["NONE"]):
            return name
    raise DeployError("no service of the pull request's compose files has a healthcheck, so none is the "
                      "preview's by default: set previews.service")


def target_port(service: str, config: Mapping[str, Any]) -> int:
    """The container port the preview's host port forwards to: the service's first published port's
    target, else its first `expose`d port."""
    for entry in config.get("ports") or []:
        target = entry.get("target") if isinstance(entry, Mapping) else None
        if isinstance(target, int | str) and str(target).isdigit():
            return int(target)
    for entry in config.get("expose") or []:
        text = str(entry).split("/", 1)[0].split("-", 1)[0]
        if text.isdigit():
            return int(text)
    raise DeployError(f"service {service!r} publishes and exposes no port, so its preview cannot be reached on "
                      "a host port: add `expose: [\"PORT\"]` to it, or use previews.labels")


def override_text(services: Mapping[str, Any], kept: Sequence[str], service: str, *, published: str | None,
                  labels: Mapping[str, str], environment: Mapping[str, str]) -> str:
    """The override file: `published` ("HOSTPORT:TARGET") for `service`, or `labels` on it; `environment`
    on every kept service; the other services out. JSON values are YAML too, so no quoting can go wrong."""
    lines = ["# Written by hooksvc for a pull-request preview: the PR's compose files, adjusted.", "services:"]
    for name in services:
        changes = []
        if name not in kept:
            changes.append(f"profiles: !override {json.dumps([EXCLUDED_PROFILE])}")
        elif name == service and published is not None:
            changes.append(f"ports: !override {json.dumps([published])}")
        elif services[name].get("ports"):
            changes.append("ports: !reset []")
        if name in kept and name == service and labels:
            changes.append(f"labels: {json.dumps(dict(labels))}")
        if name in kept and environment:
            changes.append(f"environment: {json.dumps(dict(environment))}")
        if changes:
            lines += [f"  {json.dumps(name)}:", *(f"    {c}" for c in changes)]
    if len(lines) == 2:
        lines[-1] = "services: {}"
    return "\n".join(lines) + "\n"


#: What a fork's compose file may not ask for: each would give its code the worker's machine.
_FORK_REFUSED_KEYS = {
    "privileged": "runs the container privileged",
    "cap_add": "adds kernel capabilities",
    "devices": "maps host devices",
    "security_opt": "changes the security profile",
    "sysctls": "changes kernel settings",
}
_HOST_NAMESPACES = ("network_mode", "pid", "ipc", "userns_mode", "uts", "cgroup")


def fork_problems(services: Mapping[str, Any]) -> list[str]:
    """Why a fork's compose model may not run on this machine (empty when it may): host namespaces,
    privileges, devices. Bind mounts outside the checkout are refused by compose_confinement."""
    problems = []
    for name, config in services.items():
        for key, what in _FORK_REFUSED_KEYS.items():
            if config.get(key):
                problems.append(f"services.{name}.{key} {what}")
        for key in _HOST_NAMESPACES:
            value = config.get(key)
            if isinstance(value, str) and (value == "host" or value.startswith(("container:", "service:"))):
                problems.append(f"services.{name}.{key} is {value!r}: it shares another namespace")
    return problems
