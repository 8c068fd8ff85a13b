"""Rolling a built compose release out: build, pre_deploy, the strategy's own steps, post_deploy.

The steps that every compose strategy shares live here; what differs (which containers change,
and how) is the strategy's `apply` (workers/strategies/rolling.py, recreate.py). A failure after
the build puts the image tags back on the live release (`tag_put_back`); a failure that is the
engine going away waits for it and cleans up (`outage`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import redis

from hooksvc.config import AppConfig
from hooksvc.logs import LogFn
from hooksvc.release_steps import POST_DEPLOY, PRE_DEPLOY
from workers import cancellation
from workers.compose import ComposeProject, detect_compose
from workers.docker_engine import DockerEngine
from workers.images import release_id, tag_release_images
from workers.release_step_runner import ComposeReleaseSteps
from workers.rollout.context import Rollout, RolloutResult
from workers.rollout.drain import remove_retired
from workers.rollout.live_record import LiveRecord, record_path
from workers.rollout.outage import engine_lost, recover_from_engine_outage
from workers.rollout.tag_put_back import put_back_tags

#: Hands over work that does not decide a deployment's outcome, to run once the outcome is recorded.
Defer = Callable[[Callable[[], None]], None]


class ComposeSteps(Protocol):
    """What a compose strategy adds to the shared steps: how the built release replaces the live one."""

    name: str
    #: The runner of the app's release steps (`ComposeReleaseSteps`: one-off compose containers).
    release_steps: type[ComposeReleaseSteps]

    def apply(self, rollout: Rollout) -> RolloutResult:
        """Make the built release's containers the live ones (after `pre_deploy`, before `post_deploy`)."""
        ...

    def remove_leftovers(self, rollout: Rollout) -> list[str]:
        """Remove containers an interrupted rollout of this strategy left behind; their ids."""
        ...


def roll_out(strategy: ComposeSteps, app: AppConfig, release_dir: Path, *, log: LogFn, state_dir: Path,
             shared: redis.Redis | None = None, resolved: Mapping[str, Any] | None = None,
             force: bool = False, defer: Defer | None = None) -> RolloutResult:
    """Build the release in `release_dir` and roll it out with `strategy`.

    `shared`: the Redis connection that keeps a copy of the record of live containers for workers
    on other machines (workers/rollout/live_record.py). `resolved`: the release's compose model when
    the caller has read it already (the job checks it before the build), so it is not read twice.
    `force`: recreate every service even when nothing changed (a redeploy). `defer`: where work that
    does not decide the outcome goes, to run once the deployment is recorded (the job's upkeep): the
    retired containers are then left stopped and removed there; without it they are removed at once.

    Raises ComposeError (build or compose failed; with a failed build nothing is touched),
    DeploymentCancelled (an operator cancelled before the strategy started replacing the live
    release: as after a failed gate, the new containers are removed and the old ones keep serving),
    HealthCheckFailed (a new container failed its gate; the old ones keep serving), ReleaseStepFailed
    (a `pre_deploy` step failed; nothing was rolled out), PostDeployFailed (a `post_deploy` step failed;
    the new release is live) or DeployError.
    """
    started = time.monotonic()
    project = app.project or app.name
    command = detect_compose(log=log)
    compose = ComposeProject(command=command, project=project, directory=release_dir,
                             files=tuple(app.compose_files), docker_host=app.docker_host)
    log(f"rollout of {app.name}: project {project}, strategy {strategy.name}, "
        f"compose {command.variant} {command.version}" + (f", engine {app.docker_host}" if app.docker_host else ""))
    engine = DockerEngine.connect(app.docker_host)
    rollout = Rollout(app, project, compose, engine, log, LiveRecord(record_path(state_dir, app.name), app.name,
                                                                     shared), force=force,
                      defer_removal=defer is not None)
    try:
        steps = strategy.release_steps(app, log, compose=compose, engine=engine)
        model: Future[dict[str, Any]] = Future()
        if resolved is not None:
            model.set_result(dict(resolved))
            steps.check(model.result()["services"])
        elif steps.configured:
            # A step naming an unknown service is refused before the build moves any image tag.
            model.set_result(compose.config(log))
            steps.check(model.result()["services"])
        else:
            # Nothing to refuse before the build: the model is read while the images build.
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compose-config")
            model = pool.submit(compose.config, log)
            pool.shutdown(wait=False)  # the thread ends with the call; nothing waits for it here
        log("building images")
        # The config hashes do not depend on the build: read while the images build, off the path.
        hashes_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compose-config-hash")
        hashes = hashes_pool.submit(compose.config_hashes, log)
        hashes_pool.shutdown(wait=False)
        stop = cancellation.active()
        try:
            stop.at("building")
            building = time.monotonic()
            compose.build(log)
            log(f"images built in {time.monotonic() - building:.1f}s")
            services = model.result()["services"]
            rollout.services = services
            tag_release_images(compose, engine, services, release_id(release_dir), log)
            rollout.hashes = hashes.result()
            stop.at("running pre_deploy")
            steps.run(PRE_DEPLOY, services)
            stop.at("starting the new containers")
            result = strategy.apply(rollout)
        except Exception as exc:
            if engine_lost(rollout, exc):
                recover_from_engine_outage(rollout, exc, strategy.remove_leftovers)
            put_back_tags(rollout)
            raise
        stop.past_return("the new release is live (post_deploy runs once it is)")
        steps.run(POST_DEPLOY, services)
    finally:
        rollout.engine.close()
        if defer is not None and rollout.retired:
            defer(functools.partial(remove_retired, app.docker_host, tuple(rollout.retired), log))
    seconds = time.monotonic() - started
    log(f"rollout of {app.name} done in {seconds:.1f}s")
    return dataclasses.replace(result, seconds=seconds)
