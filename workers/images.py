"""The images of an app's releases: one tag per release, pruned together with the release checkouts.

`compose build` moves one tag per built service (`<project>-<service>:latest`) to the new image; the
image it replaces would be left anonymous (dangling), and nothing would tell which release, or even
which project, it belonged to. So after each build every built service's image also gets a tag
naming its release, in one repository per project: `<project>.hooksvc-releases:<service>-<release>`.

Pruning (after the checkouts are pruned to `keep_releases`) removes the tags of releases whose
checkout is gone, which deletes an image with its last tag, then the project's dangling images
(compose v2 labels what it builds with the project's name; v1 leaves no such mark, so its
anonymous images are left alone). It never removes an image that any container on the engine was
created from (running or stopped), never forces a removal, and never touches an image outside the
project's release repository or its label. It is best effort: a deployment never fails for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooksvc.logs import LogFn
from workers.compose import ComposeProject
from workers.docker_engine import PROJECT_LABEL, DockerEngine

#: Appended to the compose project's name to make the repository holding its release tags.
RELEASES_REPOSITORY_SUFFIX = ".hooksvc-releases"
#: A Docker tag is at most 128 characters of [A-Za-z0-9_.-]; the release id (a full sha) comes last.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")


def releases_repository(project: str) -> str:
    return f"{project}{RELEASES_REPOSITORY_SUFFIX}"


def release_id(release_dir: Path) -> str:
    """The release a checkout directory holds (its name: the full sha), made safe for a tag."""
    return _TAG_UNSAFE.sub("_", release_dir.name)[:64]


def service_release_tag(service: str, release: str) -> str:
    """`<service>-<release>`; the release is what follows the last `-`."""
    return f"{service[:128 - len(release) - 1]}-{release}"


def tag_release_images(compose: ComposeProject, engine: DockerEngine, services: Mapping[str, Mapping[str, Any]],
                       release: str, log: LogFn) -> None:
    """Tag the image each built service now has with the release, so pruning can find it later."""
    repository = releases_repository(compose.project)
    for service, config in sorted(services.items()):
        if "build" not in config:
            continue
        image = engine.image_id(compose.image_name(service, config))
        if image is None:
            continue
        try:
            engine.tag(image, f"{repository}:{service_release_tag(service, release)}")
        except Exception as exc:  # noqa: BLE001 - a missing release tag costs disk later, never the deployment
            log(f"{service}: could not tag its image for release {release}: {exc}")


@dataclass(frozen=True)
class DiskUsage:
    """Bytes an app holds on a worker's machine: its release checkouts and its built images."""

    checkouts: int
    images: int


def prune_release_images(project: str, engine: DockerEngine, keep: Collection[str], log: LogFn) -> list[str]:
    """Remove the release tags of releases not in `keep`, then the project's dangling images.

    Returns what was removed (tags, and ids of dangling images).
    """
    in_use = engine.images_in_use()
    repository = releases_repository(project)
    removed: list[str] = []
    for summary in engine.images(reference=repository):
        for name in summary.get("RepoTags") or []:
            repo, _, tag = str(name).rpartition(":")
            if repo != repository or tag.rpartition("-")[2] in keep:
                continue
            if summary["Id"] in in_use:
                log(f"keeping image {name}: a container was created from it")
                continue
            problem = engine.remove_image(name)
            if problem:
                log(f"could not remove image {name}: {problem}")
            else:
                removed.append(name)
    for summary in engine.images(label=f"{PROJECT_LABEL}={project}", dangling=True):
        image = str(summary["Id"])
        if image in in_use:
            continue
        if engine.remove_image(image) is None:
            removed.append(image)
    return removed


def disk_usage(project: str, engine: DockerEngine, releases_dir: Path) -> DiskUsage:
    """The app's checkouts (allocated blocks) and its built images (their size, base layers included)."""
    checkouts = 0
    for root, _dirs, files in os.walk(releases_dir):
        for name in files:
            try:
                checkouts += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue  # removed meanwhile
    images = {str(s["Id"]): int(s.get("Size") or 0) for s in engine.images(reference=releases_repository(project))}
    return DiskUsage(checkouts=checkouts, images=sum(images.values()))


def prune_and_measure(project: str, docker_host: str | None, releases_dir: Path, log: LogFn) -> DiskUsage | None:
    """After the checkouts were pruned: prune the images of the releases gone, and measure what is left.

    Best effort: a failure is logged and answered with None.
    """
    try:
        engine = DockerEngine.connect(docker_host)
    except Exception as exc:  # noqa: BLE001 - pruning must never fail a deployment
        log(f"could not prune old images: {exc}")
        return None
    try:
        keep = {release_id(d) for d in releases_dir.iterdir() if d.is_dir()} if releases_dir.is_dir() else set()
        removed = prune_release_images(project, engine, keep, log)
        if removed:
            log(f"pruned {len(removed)} image(s) of old releases: {', '.join(removed)}")
        return disk_usage(project, engine, releases_dir)
    except Exception as exc:  # noqa: BLE001 - pruning must never fail a deployment
        log(f"could not prune old images: {exc}")
        return None
    finally:
        engine.close()
