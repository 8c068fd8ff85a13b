"""A pull request's preview deployed or torn down (SPEC §13): the job's steps for `Deployment.preview`.

A preview is the PR head, fetched from the host's ref for it (`refs/pull/N/head`,
`refs/merge-requests/N/head`) and never from a URL of the payload, checked out into a folder of its
own and rolled out with the app's compose strategy as project `<project>-pr-<N>`, from the PR's own
compose files plus an override (`workers.preview_compose`). It has its own networks and volumes
(compose names them after the project), its own lock and queued slot, and its own record in Redis
(`hooksvc.preview_records`). A teardown removes the project's containers, networks, volumes and every
image built for it, its checkouts and its record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from hooksvc import keys
from hooksvc.config import AppConfig, Config
from hooksvc.connection import call
from hooksvc.deployments import Deployment, DeploymentState, Trigger, iso_time
from hooksvc.errors import DeployError, GitError
from hooksvc.logs import LogFn
from hooksvc.preview_records import DEPLOYING, FAILED, LIVE, PreviewRecord, PreviewRecords, request_teardown
from hooksvc.previews import PreviewsConfig, preview_environment, preview_labels, preview_project, preview_url
from hooksvc.store import DeploymentStore
from workers.compose import ComposeProject, detect_compose
from workers.compose_confinement import check_compose_model, check_compose_sources
from workers.docker_engine import PROJECT_LABEL, DockerEngine
from workers.git import GitMirror
from workers.images import prune_and_measure, releases_repository
from workers.jobs import Deployer
from workers.locks import AppLock
from workers.preview_compose import (
    OVERRIDE_FILE,
    fork_problems,
    kept_services,
    override_text,
    preview_service,
    target_port,
)
from workers.rollout.live_record import record_path

log = logging.getLogger("hooksvc.worker")

#: Where the mirror keeps the head of pull request N once fetched (outside refs/heads and refs/tags,
#: which the branch fetch prunes to the origin's).
PREVIEW_HEAD_REF = "refs/hooksvc/previews/{number}"
#: Checkouts kept per preview: the one running (a preview never rolls back).
PREVIEW_KEEP_RELEASES = 1


def preview_name(app: str, number: int) -> str:
    """The name a preview's records go by (its live-container record, its checkouts' folder)."""
    return f"{app}#pr-{number}"


def preview_releases_dir(state_dir: Path, app: str, number: int) -> Path:
    return state_dir / "previews" / app / f"pr-{number}"


class PreviewDeployer(Deployer):
    """The steps of one preview deployment or teardown; `run` (Deployer's) returns the final state and error."""

    def __init__(self, config: Config, store: DeploymentStore, app: AppConfig, deployment: Deployment,
                 live_sha: str, log_line: LogFn) -> None:
        super().__init__(config, store, app, deployment, live_sha, log_line)
        assert deployment.preview is not None  # noqa: S101 - only preview deployments come here
        self.number = deployment.preview
        self.project = preview_project(app.project or app.name, self.number)
        self.releases_dir = preview_releases_dir(config.worker.state_dir, app.name, self.number)
        self.records = PreviewRecords(store.redis)

    def _run(self) -> tuple[DeploymentState, str]:
        app, dep = self.app, self.dep
        self.step(f"deployment {dep.id}: {dep.trigger} of preview #{self.number} of {app.name} "
                  f"({dep.sha[:12] or dep.ref}), project {self.project}, worker pid {os.getpid()}")
        if dep.trigger is Trigger.TEARDOWN:
            if tear_down(self.config, app, self.number, self.log, self.store):
                return DeploymentState.SUCCEEDED, ""
            return DeploymentState.SKIPPED, f"nothing of preview #{self.number} was left to remove"
        previews = app.previews
        if previews is None or not previews.enabled:
            raise DeployError(f"app {app.name} has no enabled previews ([apps.{app.name}.previews])")
        known = self.records.get(app.name, self.number)
        if known is None:
            self._make_room(previews)
        try:
            return self._deploy(previews, known)
        except Exception:
            # A live preview keeps serving its release when the next one fails; a first one never served.
            current = self.records.get(app.name, self.number)
            if current is not None and current.state != LIVE:
                self.records.put(replace(current, state=FAILED))
            raise

    def _make_room(self, previews: PreviewsConfig) -> None:
        """Below `max` live previews nothing happens; at it, refuse or tear the least recently pushed one down."""
        others = [r for r in self.records.of_app(self.app.name) if r.number != self.number]
        if len(others) < previews.max:
            return
        numbers = ", ".join(f"#{r.number}" for r in others)
        if previews.on_max == "refuse":
            raise DeployError(f"preview limit reached: app {self.app.name} has {len(others)} live previews "
                              f"({numbers}) of at most {previews.max}; close one, or set on_max = \"evict-oldest\"")
        oldest = min(others, key=lambda r: (r.updated_at, r.number))
        why = (f"preview limit reached ({previews.max}: {numbers}): evicting preview #{oldest.number}, the least "
               f"recently pushed (last push {iso_time(oldest.updated_at)}), for preview #{self.number}")
        self.log(why)
        log.warning("deployment %s of %s: %s", self.dep.id, self.app.name, why)
        # The eviction is a teardown deployment of its own, run here under the evicted PR's lock: it is
        # listed with the app's deployments and reported like any teardown. A worker that took its job
        # first has run it by the time the lock is free.
        teardown = request_teardown(self.store, self.app, oldest.number, sha=oldest.sha)
        lock = AppLock(self.store.redis, keys.app_lock(self.app.name, oldest.number), teardown.id)
        lock.acquire(lambda: True)
        with lock:
            if self.store.start(teardown.id, previous_sha=oldest.sha) is None:
                return
            self.store.logs.append(teardown.id, f"evicted by deployment {self.dep.id}: {why}")
            tear_down(self.config, self.app, oldest.number, self.log, self.store)
            self.store.finish(teardown.id, DeploymentState.SUCCEEDED)

    def _deploy(self, previews: PreviewsConfig, known: PreviewRecord | None) -> tuple[DeploymentState, str]:
        from workers.service_labels import check_service_settings
        from workers.strategies import Release, strategy_for

        app, dep, secrets = self.app, self.dep, self.config.secrets()
        self.step(f"fetching {dep.ref}")
        mirror = self._fetched_mirror(secrets)
        head = mirror.fetch_ref(dep.ref, PREVIEW_HEAD_REF.format(number=self.number))
        sha = dep.sha or head
        if not mirror.has_commit(sha) or not mirror.is_ancestor(sha, head):
            raise GitError(f"commit {sha} is not on {dep.ref} (its head is {head}): refusing to deploy it")
        if sha != dep.sha:
            self.store.set_sha(dep.id, sha)
        message, author = mirror.commit_summary(sha)
        self.store.set_commit(dep.id, message, author)
        self.step(f"checking out {sha}")
        checkout = mirror.checkout_release(sha)
        self.step("reading the pull request's compose files")
        compose = self._compose(checkout, app.compose_files)
        if compose.command.variant != "v2":
            raise DeployError(f"previews need compose v2 (2.24 or later, for its !reset and !override tags); "
                              f"this worker has compose {compose.command.variant} {compose.command.version}")
        own = compose.config(self.log)
        services: dict[str, Any] = own["services"]
        kept = kept_services(services, previews.services)
        service = preview_service(services, kept, previews.service)
        port = self._claim_port(previews)
        url = preview_url(previews, self.number, port)
        record = PreviewRecord(app=app.name, number=self.number, sha=known.sha if known else sha, url=url,
                               state=known.state if known else DEPLOYING, updated_at=dep.created_at,
                               deployment_id=dep.id, port=port, fork=dep.fork)
        self.records.put(record)
        published = f"{port}:{target_port(service, services[service])}" if port is not None else None
        (checkout / OVERRIDE_FILE).write_text(override_text(
            services, kept, service, published=published, labels=preview_labels(previews, self.number),
            environment=preview_environment(previews, self.number, url)), encoding="utf-8")
        files = (*app.compose_files, OVERRIDE_FILE)
        self.step(f"checking what compose reads{' (a fork: confined)' if dep.fork else ''}")
        check_compose_sources(checkout, files)
        model = self._compose(checkout, files).config(self.log)
        check_compose_model(model, checkout, confine_binds=dep.fork or app.docker_host is not None)
        if dep.fork and (problems := fork_problems(model["services"])):
            raise DeployError("a fork's preview may not ask for the worker's machine: " + "; ".join(problems))
        check_service_settings(model["services"])
        preview_app = replace(app, name=preview_name(app.name, self.number), project=self.project,
                              compose_files=files, registry=None)
        release = Release(preview_app, checkout, sha, dep.id, self.log, self.config.worker.state_dir,
                          shared=self.store.redis, resolved=model)
        strategy = strategy_for(app)
        self.step(f"rolling out preview #{self.number} ({strategy.name}): {', '.join(kept)}")
        with registry_logins_withheld() if dep.fork else contextlib.nullcontext():
            records = strategy.roll_out(release)
        self.records.put(replace(record, sha=sha, state=LIVE))
        self.step(f"preview #{self.number} of {app.name} ({sha[:12]}) is live at {url}")
        self._after_live = lambda: self._tidy_preview(mirror, sha, len(records))
        return DeploymentState.SUCCEEDED, ""

    def _compose(self, checkout: Path, files: tuple[str, ...]) -> ComposeProject:
        return ComposeProject(command=detect_compose(log=self.log), project=self.project, directory=checkout,
                              files=files, docker_host=self.app.docker_host)

    def _claim_port(self, previews: PreviewsConfig) -> int | None:
        if previews.ports is None:
            return None
        first, last = previews.ports
        local = self.app.docker_host is None
        port = self.records.claim_port(self.app.name, self.number, first, last,
                                       lambda p: not local or _port_free(p))
        if port is None:
            raise DeployError(f"no free port in previews.ports {first}-{last} for preview #{self.number}: "
                              "every port is held by a preview or in use")
        return port

    def _tidy_preview(self, mirror: GitMirror, sha: str, services: int) -> None:
        removed = mirror.prune_releases(PREVIEW_KEEP_RELEASES, protect={sha})
        if removed:
            self.log(f"pruned the preview's earlier checkouts: {', '.join(s[:12] for s in removed)}")
        prune_and_measure(self.project, self.app.docker_host, mirror.releases_dir, self.log)
        self.log(f"preview #{self.number}: {services} service(s) running")


def _port_free(port: int) -> bool:
    """True when nothing on this machine listens on `port` (what the engine would publish on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - a probe, closed at once: published ports bind all addresses
        except OSError:
            return False
    return True


@contextlib.contextmanager
def registry_logins_withheld() -> Iterator[None]:
    """Compose runs with a Docker CLI config of its own, holding no registry logins (a fork's preview
    gets none of the app's credentials); the CLI plugins stay found."""
    before = os.environ.get("DOCKER_CONFIG")
    original = Path(before or Path.home() / ".docker")
    with tempfile.TemporaryDirectory(prefix="hooksvc-fork-docker-") as empty:
        (Path(empty) / "config.json").write_text(json.dumps({}), encoding="utf-8")
        if (original / "cli-plugins").is_dir():
            (Path(empty) / "cli-plugins").symlink_to(original / "cli-plugins")
        os.environ["DOCKER_CONFIG"] = empty
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("DOCKER_CONFIG", None)
            else:
                os.environ["DOCKER_CONFIG"] = before


def tear_down(config: Config, app: AppConfig, number: int, log: LogFn, store: DeploymentStore) -> list[str]:
    """Remove everything of pull request `number`'s preview of `app`: containers, networks, volumes, every
    image built for it (untagged earlier builds too), its checkouts, its records. What was removed."""
    project = preview_project(app.project or app.name, number)
    records = PreviewRecords(store.redis)
    record = records.get(app.name, number)
    removed: list[str] = []
    engine = DockerEngine.connect(app.docker_host)
    try:
        for container in engine.project_container_ids(project):
            engine.remove(container)
            removed.append(f"container {container[:12]}")
        for network in engine.project_networks(project):
            if (problem := engine.remove_network(network)) is not None:
                raise DeployError(f"could not remove network {network} of preview #{number}: {problem}")
            removed.append(f"network {network}")
        for volume in engine.project_volumes(project):
            if (problem := engine.remove_volume(volume)) is not None:
                raise DeployError(f"could not remove volume {volume} of preview #{number}: {problem}")
            removed.append(f"volume {volume}")
        removed += _remove_images(engine, project, log)
    finally:
        engine.close()
    name = preview_name(app.name, number)
    releases = preview_releases_dir(config.worker.state_dir, app.name, number)
    if releases.exists():
        shutil.rmtree(releases)
        removed.append(f"checkouts in {releases}")
    record_path(config.worker.state_dir, name).unlink(missing_ok=True)
    call(store.redis.delete, keys.app_rollout_record(name))
    GitMirror(app, config.worker.state_dir, log).drop_ref(PREVIEW_HEAD_REF.format(number=number))
    records.remove(app.name, number)
    if record is not None:
        removed.append(f"record (was {record.state} at {record.url})")
    log(f"preview #{number} of {app.name} torn down: " + (", ".join(removed) or "nothing was left"))
    return removed


def _remove_images(engine: DockerEngine, project: str, log: LogFn) -> list[str]:
    """Every image built for `project`: its tags (`<project>-<service>`, its release tags) are removed,
    which deletes an image with its last tag; then its untagged earlier builds. An image another project
    also tags (the same build, byte for byte) keeps that other tag."""
    removed: list[str] = []
    prefixes = (f"{project}-", f"{releases_repository(project)}:")
    tags = {str(tag) for pattern in (f"{project}-*", releases_repository(project))
            for summary in engine.images(reference=pattern) for tag in summary.get("RepoTags") or []}
    tags |= {str(tag) for summary in engine.images(label=f"{PROJECT_LABEL}={project}")
             for tag in summary.get("RepoTags") or [] if str(tag).startswith(prefixes)}
    for tag in sorted(t for t in tags if t.startswith(prefixes)):
        problem = engine.remove_image(tag)
        if problem is None:
            removed.append(f"image {tag}")
        else:
            log(f"could not remove image {tag}: {problem}")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        dangling = [str(s["Id"]) for s in engine.images(label=f"{PROJECT_LABEL}={project}", dangling=True)]
        gone = [image for image in dangling if engine.remove_image(image) is None]
        removed += [f"image {image[7:19]}" for image in gone]
        if not gone:
            break
    return removed
