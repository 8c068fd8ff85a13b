"""The `hooksvc` command line: argument parsing, and the operator commands on the core.

The long-running commands (`serve`, `worker`, `run`, `check-config`) hand over to
`hooksvc.runtime`; `deploy`, `rollback`, `logs` and `status` read and write the store directly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from hooksvc import defaults, redact
from hooksvc.config import AppConfig, Config, load_config, resolve_config_path
from hooksvc.deployments import Deployment, DeploymentState
from hooksvc.errors import ConfigError, HooksvcError
from hooksvc.operations import app_overview, queue_manual, queue_rollback
from hooksvc.presentation import format_ago
from hooksvc.store import DeploymentStore, open_store

log = logging.getLogger("hooksvc")

#: Exit status for a bad command line or configuration (argparse uses 2 as well).
EXIT_USAGE = 2


# -- serve / worker / run: handed over to the runtime -------------------------------------------

# Each command imports only its own side: a web process never loads Docker's SDK or GitPython, and
# `hooksvc status` neither of them.

def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.runtime.web import serve

    if not args.read_timeout > 0:
        raise HooksvcError(f"--read-timeout must be a positive number of seconds, got {args.read_timeout:g}")
    return serve(config, bind=args.bind, processes=args.processes, threads=args.threads,
                 access_log=args.access_log, read_timeout=args.read_timeout)


def cmd_worker(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.runtime.worker import work

    return work(config, burst=args.burst)


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.runtime.supervise import Supervisor

    return Supervisor(config, workers=args.workers, bind=args.bind).run()


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


def _app(config: Config, name: str) -> AppConfig:
    app = config.app(name)
    if app is None:
        raise HooksvcError(f"no app {name!r} in {config.path} (apps: {', '.join(sorted(config.apps)) or 'none'})")
    return app


def cmd_deploy(config: Config, args: argparse.Namespace) -> int:
    app = _app(config, args.app)
    store = open_store(config)
    return _queued(store, queue_manual(store, app, args.sha or "", app.full_ref(args.ref or "")), args.wait)


def cmd_rollback(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    return _queued(store, queue_rollback(store, _app(config, args.app), args.to or ""), args.wait)


def cmd_logs(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    store.get(args.id)
    if args.follow:
        _follow(store, args.id, print)
    else:
        lines, _ = store.logs.read(args.id)
        for line in lines:
            print(line)
    return 0


# -- status --------------------------------------------------------------------------------------

def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    names = [args.app] if args.app else list(config.apps)
    rows = [["APP", "LIVE", "STATE", "LAST DEPLOYMENT", "QUEUED"]]
    for name in names:
        o = app_overview(store, _app(config, name))
        last = o["last_deployment"]
        last_text = "-"
        if last:
            dep = store.get(last["id"])
            last_text = f"#{dep.id} {dep.trigger} {dep.sha[:12] or dep.ref} {format_ago(dep.created_at) or '-'}"
        rows.append([
            name, (o["live_sha"] or "-")[:12], o["state"] or "-", last_text,
            f"#{o['queued_deployment']}" if o["queued_deployment"] else "-",
        ])
    print(_table(rows))
    if args.app:
        print()
        recent = store.recent(app=args.app, limit=10)
        detail = [["ID", "STATE", "TRIGGER", "SHA", "CREATED", "ERROR"]]
        for dep in recent:
            created = datetime.fromtimestamp(dep.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            detail.append([dep.id, dep.state, dep.trigger, dep.sha[:12] or dep.ref, created, dep.error[:60]])
        print(_table(detail) if recent else "no deployments yet")
    return 0


# -- check-config --------------------------------------------------------------------------------

def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    print(f"{config.path}: configuration valid ({len(config.apps)} apps, {len(config.hosts)} hosts)")
    problems = 0
    from hooksvc.runtime.worker import check_services

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

    p = sub.add_parser("serve", parents=[common], help="the production HTTP server (gunicorn + waitress)")
    p.add_argument("--bind", help="HOST:PORT (overrides server.listen)")
    p.add_argument("--processes", type=int, default=defaults.WEB_PROCESSES, help="web worker processes")
    p.add_argument("--threads", type=int, default=defaults.WEB_THREADS, help="application threads per web process")
    p.add_argument("--read-timeout", type=float, default=defaults.WEB_READ_TIMEOUT_SECONDS, metavar="SECONDS",
                   help="close a connection whose request has not arrived whole within this long")
    p.add_argument("--access-log", action="store_true", help="log every request to stdout")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", parents=[common], help="an RQ deploy worker (many may run, on many machines)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "run", parents=[common], help="web + workers on one machine (private redis-server if none is configured)",
    )
    p.add_argument("--bind", help="HOST:PORT (overrides server.listen)")
    p.add_argument("--workers", type=int, default=defaults.RUN_WORKERS, help="deploy workers to start")
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[redact.log_handler()])
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
