"""`hooksvc run` without a configuration: the quickstart (see `hooksvc.quickstart_state` for its state).

It prepares the state folder and the example repository, then runs the ordinary `hooksvc run`
supervisor on the quickstart's config with one more child, the demo proxy (`workers.demo_proxy`). Once
the web server answers it installs the repository's post-receive hook, deploys the example when no
healthy container of it runs, and prints the four lines a newcomer needs. The children's output
goes to `hooksvc.log` in the state folder, so the terminal shows only what the newcomer acts on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, NoReturn

from hooksvc import quickstart_state
from hooksvc.bare_repo_hook import HookSettings, install
from hooksvc.config import load_config
from hooksvc.deployments import DeploymentState
from hooksvc.errors import HooksvcError
from hooksvc.operations import queue_manual
from hooksvc.runtime.base import leave
from hooksvc.runtime.supervise import Child, Supervisor
from hooksvc.store import open_store
from workers.bare_repo import create_bare_repository
from workers.demo_proxy import serving

log = logging.getLogger("hooksvc.quickstart")

#: How long the web server may take to answer after it was started (gunicorn forks, imports Flask).
WEB_START_SECONDS = 60.0


def say(line: str) -> None:
    print(line, flush=True)


def run_quickstart(args: argparse.Namespace) -> NoReturn:
    if args.bind:
        raise HooksvcError("the quickstart chooses its own ports (kept in .hooksvc-quickstart/ports.json): "
                           "--bind needs a configuration (--config PATH or $HOOKSVC_CONFIG)")
    try:
        qs = quickstart_state.prepare(Path.cwd())
        if not qs.repository.exists():
            create_bare_repository(qs.repository, quickstart_state.EXAMPLE_FILES, quickstart_state.BRANCH,
                                   "The example app: busybox httpd serving www/")
    except OSError as exc:
        raise HooksvcError(f"cannot prepare the quickstart's folder {quickstart_state.STATE_DIR_NAME}/ in "
                           f"{Path.cwd()}: {exc.strerror or exc}") from None
    config = load_config(str(qs.config_path), env={})
    say(f"hooksvc quickstart: no configuration given, so running the demo in {qs.folder} "
        f"(its config.toml; logs in {qs.log_path.name})")
    supervisor = Supervisor(config, workers=args.workers, bind=None)
    supervisor.children.append(Child("demo-proxy", [
        sys.executable, "-m", "workers.demo_proxy", str(qs.app_port), qs.project, quickstart_state.SERVICE,
        str(quickstart_state.SERVICE_PORT),
    ]))
    output = qs.log_path.open("ab")
    logging.getLogger().handlers[:] = [_BytesLog(output)]
    supervisor.output = output
    supervisor.say = say  # what a stop waits for goes to the terminal, not only to the log
    failed: list[bool] = []
    supervisor.on_started = lambda: failed.append(not _started(qs, supervisor))
    try:
        status = supervisor.run()
    finally:
        output.close()
    leave(1 if any(failed) else status)


class _BytesLog(logging.Handler):
    """The supervisor's own log lines, into the binary log file the children write to."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write((self.format(record) + "\n").encode())
            self.stream.flush()
        except (OSError, ValueError):
            pass


def _started(qs: quickstart_state.Quickstart, supervisor: Supervisor) -> bool:
    """Once the children run: hook, first deployment, the four lines. A failure stops the quickstart (False)."""
    try:
        _wait_for_web(qs)
        config = load_config(str(qs.config_path), env={})
        app = config.apps[quickstart_state.APP_NAME]
        install(qs.repository, HookSettings.for_app(config, app, qs.dashboard_url, wait=True),
                app.secret.reveal(), sys.executable)
        if not serving(qs.project, quickstart_state.SERVICE, quickstart_state.SERVICE_PORT):
            say("hooksvc quickstart: deploying the example app (the first build takes a few seconds)")
            store = open_store(config)
            deployment = queue_manual(store, app, "", "")
            final = store.get(deployment.id)
            deadline = time.monotonic() + config.worker.job_timeout
            while not final.state.is_final and time.monotonic() < deadline:
                time.sleep(0.3)
                final = store.get(deployment.id)
            if final.state is not DeploymentState.SUCCEEDED:
                print(f"hooksvc quickstart: the example's deployment {final.id} ended {final.state}: "
                      f"{final.error or 'see its log on the dashboard'}", file=sys.stderr, flush=True)
        _wait_for_app(qs)
        say("hooksvc quickstart: clone the repository, edit www/index.html, commit and `git push`: "
            "the push shows the deployment, and the app serves the new version. Ctrl-C stops hooksvc.")
        for line in qs.lines():
            say(line)
        return True
    except (HooksvcError, OSError) as exc:
        print(f"hooksvc quickstart: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - the docker SDK's errors among them: say it, then stop
        print(f"hooksvc quickstart: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    supervisor.request_stop()
    return False


def _wait_for_app(qs: quickstart_state.Quickstart) -> None:
    """The `app:` line promises a page: wait until the demo proxy serves the example (it finds the
    container within a second of its start); past the bound, say so and print the lines anyway."""
    deadline = time.monotonic() + WEB_START_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(qs.app_url, timeout=2) as answer:  # noqa: S310 - loopback
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    print(f"hooksvc quickstart: {qs.app_url} does not serve the example yet: see {qs.log_path}",
          file=sys.stderr, flush=True)


def _wait_for_web(qs: quickstart_state.Quickstart) -> None:
    deadline = time.monotonic() + WEB_START_SECONDS
    while True:
        try:
            with urllib.request.urlopen(qs.dashboard_url + "healthz", timeout=2):  # noqa: S310 - loopback
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise HooksvcError(f"hooksvc's web server did not answer on {qs.dashboard_url} within "
                                   f"{WEB_START_SECONDS:.0f}s: see {qs.log_path}") from None
            time.sleep(0.3)
