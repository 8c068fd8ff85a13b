"""Everything compose reads on the worker stays inside the release checkout.

A compose file is the pusher's: without this check it could name a build context of
`/proc/<worker pid>` (whose `environ` once held every secret), an `env_file` such as
`/etc/hooksvc/tokens`, a `.env` that is a symlink to a host file, or a build secret read from the
worker's disk, and the content would reach the build, a container or the deployment log. The
worker's host holds the operator's tokens and other apps' secrets; a pusher may own an app's engine
(`docker_host`), never the worker.

Two checks, both before anything builds:

- `check_compose_sources` reads the app's compose files as they lie in the checkout, before
  `compose config` runs: `compose config` itself reads `.env`, `env_file`s, `label_file`s,
  `extends` and `include` files, and quotes a file it cannot parse in its error, which reaches
  the log. A path there with a `${VAR}` is refused too: it could only be judged once compose had
  read it.
- `check_compose_model` reads the resolved model (`compose config` output, v1's and v2's): build
  contexts, Dockerfiles, additional contexts, build ssh keys, top-level `secrets` and `configs`
  files and, when the app's engine is not the worker's own (`docker_host`), bind-mount sources.

Each path is resolved (symlinks followed) and refused, naming the key and the path, when it leaves
the checkout. Both functions only read files; they start no process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hooksvc.errors import DeployError

#: Build contexts that the engine fetches itself (nothing read on the worker's disk).
REMOTE_CONTEXT_PREFIXES = ("https://", "http://", "git://")
#: Additional build contexts that name an image or another service, not a directory.
NON_PATH_CONTEXT_PREFIXES = ("docker-image://", "service:", "target:", "oci-layout://")
#: The Dockerfile a build reads when `build.dockerfile` names none.
DEFAULT_DOCKERFILE = "Dockerfile"
#: The ignore file the Docker client reads from a build context on the worker.
DOCKERIGNORE = ".dockerignore"


class ReadOutsideRelease(DeployError):
    """A compose file makes compose read something outside the release checkout on the worker."""


def resolved_inside(path: Path, root: Path) -> bool:
    """True when `path`, every symlink resolved, is `root` or below it (`root` resolved too)."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip("/") + "/")


def _refuse_outside(key: str, value: str, path: Path, root: Path) -> None:
    if not resolved_inside(path, root):
        real = os.path.realpath(path)
        via = "" if real == os.path.normpath(path) else f" (a symlink to {real})"
        raise ReadOutsideRelease(
            f"{key}: {value!r}{via} is outside the release checkout: compose may read only the "
            f"release's own files on the worker; move it into the repository"
        )


# ---- the compose files as they lie in the checkout -------------------------------------------

def check_compose_sources(release_dir: Path, compose_files: Sequence[str]) -> None:
    """Refuse compose files, `.env`, `env_file`s, `extends` and `include` files that leave the checkout.

    Run before `compose config`, which reads all of them. A file that is not YAML is left to compose
    (it lies in the checkout, so its error quotes the release's own text).
    """
    seen: set[str] = set()
    for i, name in enumerate(compose_files):
        _refuse_outside(f"compose_files[{i}]", name, release_dir / name, release_dir)
    for name in compose_files[:1]:
        _check_env_file_of_project((release_dir / name).parent, release_dir)
    _check_env_file_of_project(release_dir, release_dir)
    for name in compose_files:
        _check_compose_file(release_dir / name, name, release_dir, seen)


def _check_env_file_of_project(directory: Path, root: Path) -> None:
    dotenv = directory / ".env"
    if os.path.lexists(dotenv):
        _refuse_outside(".env", str(dotenv.relative_to(root)) if dotenv.is_relative_to(root) else str(dotenv),
                        dotenv, root)


def _check_compose_file(path: Path, label: str, root: Path, seen: set[str]) -> None:
    real = os.path.realpath(path)
    if real in seen or not os.path.isfile(real):
        return
    seen.add(real)
    try:
        document = yaml.safe_load(Path(real).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # compose reports it, quoting only the release's own file
    if not isinstance(document, Mapping):
        return
    base = path.parent
    services = document.get("services")
    for service, config in (services.items() if isinstance(services, Mapping) else ()):
        if not isinstance(config, Mapping):
            continue
        prefix = f"{label}: services.{service}"
        for key, value in _env_file_paths(config.get("env_file"), f"{prefix}.env_file"):
            _check_read_path(key, value, base, root)
        for key, value in _env_file_paths(config.get("label_file"), f"{prefix}.label_file"):
            _check_read_path(key, value, base, root)
        extends = config.get("extends")
        if isinstance(extends, Mapping) and isinstance(extends.get("file"), str):
            file = extends["file"]
            _check_read_path(f"{prefix}.extends.file", file, base, root)
            _check_compose_file(base / file, file, root, seen)
    includes = document.get("include")
    for i, entry in enumerate(includes if isinstance(includes, list) else ()):
        for kind, key, value in _include_paths(entry, f"{label}: include[{i}]"):
            _check_read_path(key, value, base, root)
            if kind == "project_directory":
                _check_env_file_of_project(base / value, root)
            elif kind == "path":
                _check_compose_file(base / value, value, root, seen)


def _env_file_paths(value: object, key: str) -> Iterator[tuple[str, str]]:
    """(key, path) for each entry of an `env_file`: a string, a list of strings or of `{path: ...}`."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield f"{key}[{i}]", item
            elif isinstance(item, Mapping) and isinstance(item.get("path"), str):
                yield f"{key}[{i}].path", item["path"]


def _include_paths(entry: object, key: str) -> Iterator[tuple[str, str, str]]:
    """(kind, key, path) of one `include` entry: its compose files (`path`), `env_file`s, `project_directory`."""
    if isinstance(entry, str):
        yield "path", key, entry
        return
    if not isinstance(entry, Mapping):
        return
    paths = entry.get("path")
    for i, item in enumerate([paths] if isinstance(paths, str) else paths if isinstance(paths, list) else []):
        if isinstance(item, str):
            yield "path", f"{key}.path[{i}]", item
    for env_key, value in _env_file_paths(entry.get("env_file"), f"{key}.env_file"):
        yield "env_file", env_key, value
    if isinstance(entry.get("project_directory"), str):
        yield "project_directory", f"{key}.project_directory", entry["project_directory"]


def _check_read_path(key: str, value: str, base: Path, root: Path) -> None:
    if "$" in value:
        raise ReadOutsideRelease(
            f"{key}: {value!r} uses a variable: compose reads this path while it resolves the model, so "
            f"it must be a plain path inside the release checkout"
        )
    if value.startswith("~"):
        _refuse_outside(key, value, Path(os.path.expanduser(value)), root)
    _refuse_outside(key, value, base / value, root)


# ---- the resolved model (`compose config`) -----------------------------------------------------

def check_compose_model(model: Mapping[str, Any], release_dir: Path, *, confine_binds: bool) -> None:
    """Refuse a resolved compose model that makes compose or the build read outside `release_dir`.

    `confine_binds`: the app's engine is not the worker's own, so a bind-mount source may not name a
    worker path outside the checkout either (on the worker's own engine a pusher is root already).
    """
    services = model.get("services")
    for service, config in (services.items() if isinstance(services, Mapping) else ()):
        if isinstance(config, Mapping):
            _check_service(str(service), config, release_dir, confine_binds)
    for section in ("secrets", "configs"):
        entries = model.get(section)
        for name, entry in (entries.items() if isinstance(entries, Mapping) else ()):
            if isinstance(entry, Mapping) and isinstance(entry.get("file"), str):
                file = entry["file"]
                _refuse_outside(f"{section}.{name}.file", file, release_dir / file, release_dir)


def _check_service(service: str, config: Mapping[str, Any], root: Path, confine_binds: bool) -> None:
    prefix = f"services.{service}"
    build = config.get("build")
    if isinstance(build, str):
        build = {"context": build}
    if isinstance(build, Mapping):
        _check_build(prefix, build, root)
    for key, value in _env_file_paths(config.get("env_file"), f"{prefix}.env_file"):
        _refuse_outside(key, value, root / value, root)
    label_files = config.get("label_file")
    for i, value in enumerate([label_files] if isinstance(label_files, str) else label_files or []):
        if isinstance(value, str):
            _refuse_outside(f"{prefix}.label_file[{i}]", value, root / value, root)
    if confine_binds:
        for i, source in _bind_sources(config.get("volumes")):
            _refuse_outside(f"{prefix}.volumes[{i}] (a bind mount, on an engine other than the worker's)",
                            source, root / source, root)


def _check_build(prefix: str, build: Mapping[str, Any], root: Path) -> None:
    context = build.get("context", ".")
    if not isinstance(context, str):
        return
    remote = context.startswith(REMOTE_CONTEXT_PREFIXES)
    if not remote:
        _refuse_outside(f"{prefix}.build.context", context, root / context, root)
        ignore = root / context / DOCKERIGNORE
        if os.path.lexists(ignore):
            _refuse_outside(f"{prefix}.build.context ({DOCKERIGNORE})", str(ignore), ignore, root)
    # v1's model leaves the default Dockerfile out; a build reads it all the same.
    dockerfile = build.get("dockerfile", DEFAULT_DOCKERFILE)
    if isinstance(dockerfile, str) and not (remote and not os.path.isabs(dockerfile)):
        _refuse_outside(f"{prefix}.build.dockerfile", dockerfile, root / context / dockerfile, root)
    extra = build.get("additional_contexts")
    items = extra.items() if isinstance(extra, Mapping) else (
        (str(e).partition("=")[0], str(e).partition("=")[2]) for e in extra or [] if isinstance(extra, list))
    for name, value in items:
        if isinstance(value, str) and not value.startswith(REMOTE_CONTEXT_PREFIXES + NON_PATH_CONTEXT_PREFIXES):
            _refuse_outside(f"{prefix}.build.additional_contexts.{name}", value, root / value, root)
    ssh = build.get("ssh")
    entries = [f"{k}={v}" if v else str(k) for k, v in ssh.items()] if isinstance(ssh, Mapping) else ssh or []
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        ident, _, value = str(entry).partition("=")
        if not value:
            # `default` hands the build the worker's ssh agent: the operator's keys, not the release's.
            raise ReadOutsideRelease(
                f"{prefix}.build.ssh[{i}]: {entry!r} forwards the worker's ssh agent into the build: "
                f"name a key file inside the release checkout (`id=./path`) instead"
            )
        for part in value.split(","):
            _refuse_outside(f"{prefix}.build.ssh[{i}] ({ident})", part, root / part, root)


def _bind_sources(volumes: object) -> Iterator[tuple[int, str]]:
    """(index, source) of each bind mount: v2's long form, or v1's `source:target[:mode]` strings."""
    for i, volume in enumerate(volumes if isinstance(volumes, list) else []):
        if isinstance(volume, Mapping):
            if volume.get("type") == "bind" and isinstance(volume.get("source"), str):
                yield i, volume["source"]
        elif isinstance(volume, str) and ":" in volume:
            source = volume.split(":", 1)[0]
            if source.startswith(("/", ".", "~")):
                yield i, source
