"""The `hooksvc` command line (SPEC §5)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hooksvc import defaults
from hooksvc.config import Config, load_config, resolve_config_path
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.errors import ConfigError, HooksvcError
from hooksvc.store import DeploymentStore, connect

log = logging.getLogger("hooksvc")

#: Exit status for a bad command line or configuration (argparse uses 2 as well).
EXIT_USAGE = 2
#: Web worker processes and threads of `hooksvc serve`: threads let a followed log stream without
#: blocking webhooks; two processes keep one slow request from stalling the others.
WEB_PROCESSES = 2
WEB_THREADS = 8
#: Deploy workers started by `hooksvc run`: two, so two apps deploy in parallel.
RUN_WORKERS = 2


def _store(config: Config) -> DeploymentStore:
    from hooksvc import default_listeners

    return DeploymentStore(
        connect(config.redis.url), job_timeout=config.worker.job_timeout, listeners=default_listeners()
    )


def _start_background(config: Config, reporter: bool) -> None:
    """Reaper (ends deployments whose worker died); in workers also intake dispatcher, reporter and poller."""
    store = _store(config)

    def reap_forever() -> None:
        while True:
            time.sleep(defaults.REAPER_INTERVAL_SECONDS)
            try:
                for dep in store.reap_abandoned():
                    log.warning("deployment %s of %s ended error: its worker died", dep.id, dep.app)
            except HooksvcError as exc:
                log.warning("reaper: %s", exc)

    threading.Thread(target=reap_forever, name="reaper", daemon=True).start()
    if reporter:
        threading.Thread(target=dispatch_forever, args=(store,), name="intake", daemon=True).start()
        from workers.poller import start_poller_thread
        from workers.reporter import start_reporter_thread

        start_reporter_thread(config, store.redis)
        start_poller_thread(config, store, store.redis)


def dispatch_forever(store: DeploymentStore) -> None:
    """Turn the web side's intake into RQ jobs and status events as soon as it arrives."""
    last_recovery = 0.0
    while True:
        try:
            store.dispatch_intake(block_seconds=defaults.INTAKE_BLOCK_SECONDS)
            if time.monotonic() - last_recovery > defaults.INTAKE_RECOVER_SECONDS:
                last_recovery = time.monotonic()
                if store.recover_intake():
                    log.warning("intake: put back entries of a dispatcher that died")
        except HooksvcError as exc:
            log.warning("intake: %s", exc)
            time.sleep(defaults.INTAKE_BLOCK_SECONDS)


# -- serve ---------------------------------------------------------------------------------------

def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from hooksvc import create_app

    bind = args.bind or config.server.listen

    class Server(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
        def load_config(self) -> None:
            self.cfg.set("bind", [bind])
            self.cfg.set("workers", args.processes)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", args.threads)
            self.cfg.set("accesslog", "-" if args.access_log else None)
            self.cfg.set("post_worker_init", lambda worker: _start_background(config, reporter=False))

        def load(self) -> Any:
            return create_app(config)

    Server().run()
    return 0


# -- worker --------------------------------------------------------------------------------------

def cmd_worker(config: Config, args: argparse.Namespace) -> int:
    from rq import Queue, Worker

    conn = connect(config.redis.url)
    # The job loads the config itself (RQ jobs only get ids); point it at the file we validated.
    os.environ[defaults.CONFIG_ENV] = str(Path(config.path).resolve())
    if config.redis.url != os.environ.get(defaults.REDIS_URL_ENV, config.redis.url):
        os.environ[defaults.REDIS_URL_ENV] = config.redis.url
    # Import the job's modules once here: every job runs in a fork of this process, which then
    # inherits them instead of importing them again (~0.1 s per deployment, measured).
    import workers.jobs
    import workers.rollout  # noqa: F401
    from workers.compose import detect_compose

    try:
        detect_compose()  # the forks inherit the detection too
    except HooksvcError as exc:
        log.warning("%s (deployments will fail until compose is installed)", exc)

    if not args.burst:
        _start_background(config, reporter=True)
    worker = Worker([Queue(defaults.QUEUE_NAME, connection=conn)], connection=conn)
    worker.work(burst=args.burst, logging_level="INFO")
    return 0


# -- run -----------------------------------------------------------------------------------------

def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.supervise import Supervisor

    supervisor = Supervisor(config, workers=args.workers, bind=args.bind)
    return supervisor.run()


# -- deploy / rollback / logs --------------------------------------------------------------------

def _follow(store: DeploymentStore, deployment_id: str, out: Callable[[str], None]) -> Deployment:
    for line in store.follow_log(deployment_id):
        out(line)
    return store.get(deployment_id)


def _queued(store: DeploymentStore, dep: Deployment, wait: bool) -> int:
    print(f"deployment {dep.id} of {dep.app} queued ({dep.sha[:12] or dep.ref})")
    if not wait:
        return 0
    final = _follow(store, dep.id, print)
    print(f"deployment {final.id}: {final.state}" + (f": {final.error}" if final.error else ""))
    return 0 if final.state is DeploymentState.SUCCEEDED else 1


def _app(config: Config, name: str) -> Any:
    app = config.app(name)
    if app is None:
        raise HooksvcError(f"no app {name!r} in {config.path} (apps: {', '.join(sorted(config.apps)) or 'none'})")
    return app


def cmd_deploy(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.operations import queue_manual

    app = _app(config, args.app)
    store = _store(config)
    ref = args.ref or ""
    if ref and not ref.startswith("refs/"):
        ref = f"refs/tags/{ref}" if app.tags is not None else f"refs/heads/{ref}"
    return _queued(store, queue_manual(store, app, args.sha or "", ref), args.wait)


def cmd_rollback(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.operations import queue_rollback

    store = _store(config)
    return _queued(store, queue_rollback(store, _app(config, args.app), args.to or ""), args.wait)


def cmd_logs(config: Config, args: argparse.Namespace) -> int:
    store = _store(config)
    store.get(args.id)
    if args.follow:
        _follow(store, args.id, print)
    else:
        lines, _ = store.read_log(args.id)
        for line in lines:
            print(line)
    return 0


# -- status --------------------------------------------------------------------------------------

def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.operations import app_overview

    store = _store(config)
    names = [args.app] if args.app else list(config.apps)
    rows = [["APP", "LIVE", "STATE", "LAST DEPLOYMENT", "QUEUED"]]
    for name in names:
        o = app_overview(store, _app(config, name))
        last = o["last_deployment"]
        last_text = "-"
        if last:
            dep = store.get(last["id"])
            last_text = f"#{dep.id} {dep.trigger} {dep.sha[:12] or dep.ref} {_ago(dep.created_at)}"
        rows.append([
            name, (o["live_sha"] or "-")[:12], o["state"] or "-", last_text,
            f"#{o['queued_deployment']}" if o["queued_deployment"] else "-",
        ])
    print(_table(rows))
    if args.app:
        print()
        recent = store.list(app=args.app, limit=10)
        detail = [["ID", "STATE", "TRIGGER", "SHA", "CREATED", "ERROR"]]
        for dep in recent:
            created = datetime.fromtimestamp(dep.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            detail.append([dep.id, dep.state, dep.trigger, dep.sha[:12] or dep.ref, created, dep.error[:60]])
        print(_table(detail) if recent else "no deployments yet")
    return 0


# -- check-config --------------------------------------------------------------------------------

def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.checks import check_services

    print(f"{config.path}: configuration valid ({len(config.apps)} apps, {len(config.hosts)} hosts)")
    problems = 0
    for name, problem in check_services(config):
        print(f"  {name}: {'ok' if problem is None else 'FAILED: ' + problem}")
        problems += problem is not None
    return 1 if problems else 0


# -- parsing -------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hooksvc", description="GitOps deploy server for Docker Compose")
    parser.add_argument("--config", help=f"config file (default: ${defaults.CONFIG_ENV})")
    # Every command takes --config after its name too; SUPPRESS keeps it from overwriting the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=f"config file (default: ${defaults.CONFIG_ENV})")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="the production HTTP server (gunicorn)")
    p.add_argument("--bind", help="HOST:PORT (overrides server.listen)")
    p.add_argument("--processes", type=int, default=WEB_PROCESSES, help="web worker processes")
    p.add_argument("--threads", type=int, default=WEB_THREADS, help="threads per web worker process")
    p.add_argument("--access-log", action="store_true", help="log every request to stdout")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", parents=[common], help="an RQ deploy worker (many may run, on many machines)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "run", parents=[common], help="web + workers on one machine (private redis-server if none is configured)",
    )
    p.add_argument("--bind", help="HOST:PORT (overrides server.listen)")
    p.add_argument("--workers", type=int, default=RUN_WORKERS, help="deploy workers to start")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("deploy", parents=[common], help="queue a manual deployment")
    p.add_argument("app")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sha")
    g.add_argument("--ref")
    p.add_argument("--wait", action="store_true", help="follow progress; exit non-zero unless it succeeds")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("rollback", parents=[common], help="redeploy the previous successful release")
    p.add_argument("app")
    p.add_argument("--to", help="a sha to roll back to")
    p.add_argument("--wait", action="store_true", help="follow progress; exit non-zero unless it succeeds")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("status", parents=[common], help="apps, their live sha, recent deployments")
    p.add_argument("app", nargs="?")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", parents=[common], help="a deployment's log")
    p.add_argument("id")
    p.add_argument("--follow", "-f", action="store_true")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("check-config", parents=[common], help="validate the config; check Redis, Docker and git")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        try:
            path = resolve_config_path(args.config, os.environ)
        except ConfigError:
            path = "configuration"
        print(f"hooksvc: {path} is not valid ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result: int = args.func(config, args)
        return result
    except HooksvcError as exc:
        print(f"hooksvc: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
