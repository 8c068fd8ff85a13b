"""The `hooksvc` command line: argument parsing, and the operator commands on the core.

The long-running commands (`serve`, `worker`, `run`, `check-config`) hand over to
`hooksvc.runtime`; `deploy`, `redeploy`, `rollback`, `lock`, `unlock`, `logs`, `status` and `audit` read and
write the store directly.

Who runs an operator command: whoever can run it reads the config's secrets and Redis directly,
so the command line cannot keep anyone below a role; it acts as the local admin, named after the
login user (`local:root`), and says so in the audit trail. `--as NAME` (or `$HOOKSVC_OPERATOR`)
with that operator's token in `$HOOKSVC_TOKEN` acts as that operator instead, within its role: a
shared account then still records who did what.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from hooksvc import app_locks, audit, defaults, redact
from hooksvc.config import AppConfig, Config, load_config, resolve_config_path
from hooksvc.deployments import Deployment, DeploymentState, iso_time
from hooksvc.disk_usage import format_bytes, read_disk_usage
from hooksvc.errors import ConfigError, HooksvcError
from hooksvc.jobqueue import workers_alive
from hooksvc.live_services import read_services
from hooksvc.operations import (
    AppOverview,
    FreezeOverride,
    app_overview,
    queue_manual,
    queue_redeploy,
    queue_rollback,
    wait_for_deployment,
    waiting_for_checks,
)
from hooksvc.operators import Operator, Role, find_by_token, require
from hooksvc.presentation import format_ago
from hooksvc.preview_records import PreviewRecords, request_teardown
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
    from hooksvc.runtime.supervise import run

    run(config, workers=args.workers, bind=args.bind)


# -- deploy / rollback / logs --------------------------------------------------------------------

def _follow(store: DeploymentStore, deployment_id: str, out: Callable[[str], None]) -> Deployment:
    for line in store.follow_log(deployment_id):
        out(redact.terminal_safe(line))
    return store.get(deployment_id)


def _queued(config: Config, store: DeploymentStore, dep: Deployment, wait: bool) -> int:
    print(f"deployment {dep.id} of {dep.app} {dep.state} ({dep.sha[:12] or dep.ref})"
          + (f": {dep.error}" if dep.state is DeploymentState.HELD else ""))
    if not wait:
        return 0
    return wait_for_deployment(store, dep.id, config.worker.job_timeout + defaults.WAIT_MARGIN_SECONDS)


def _app(config: Config, name: str) -> AppConfig:
    app = config.app(name)
    if app is None:
        raise HooksvcError(f"no app {name!r} in {config.path} (apps: {', '.join(sorted(config.apps)) or 'none'})")
    return app


_T = TypeVar("_T")


# -- who runs the command ------------------------------------------------------------------------

#: The audit trail's `address` of what the command line did.
CLI_ADDRESS = "local"
#: The audit trail's `user_agent` of what the command line did.
CLI_AGENT = "hooksvc command line"


def local_admin() -> Operator:
    """Who runs the command line without `--as`: the machine's login user, as an admin."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return Operator(f"local:{user}", Role.ADMIN)


def command_operator(config: Config, name: str | None, env: dict[str, str] | None = None) -> Operator:
    """The operator a command runs as: `name` (from --as or $HOOKSVC_OPERATOR) proven by its token in
    $HOOKSVC_TOKEN, or the local admin when no name is given."""
    environ = os.environ if env is None else env
    name = name or environ.get(defaults.CLI_OPERATOR_ENV) or None
    if name is None:
        return local_admin()
    token = environ.get(defaults.CLI_TOKEN_ENV, "")
    if not token:
        raise HooksvcError(f"acting as {name!r} needs that operator's token in ${defaults.CLI_TOKEN_ENV}")
    operator = find_by_token(config.credentials(), token)
    if operator is None or operator.name != name:
        raise HooksvcError(f"${defaults.CLI_TOKEN_ENV} is not the token of operator {name!r} in {config.path}")
    return operator


def _audited(store: DeploymentStore, args: argparse.Namespace, action: str, what: str,
             act: Callable[[str], Deployment], deployment: str | None = None) -> Deployment:
    """Check the command's operator against the deployer role, run `act`, and audit how it ended
    (`deployment`: the one the command names, audited even when the action fails)."""
    operator: Operator = args.operator
    entry = audit.AuditEntry(action=action, result=audit.OK, operator=operator.name, app=getattr(args, "app", None),
                             deployment=deployment, address=CLI_ADDRESS, user_agent=CLI_AGENT)
    try:
        require(operator, Role.DEPLOYER, what)
        dep = act(operator.name)
    except HooksvcError as exc:
        refused = exc.status_code == 403
        audit.record(store.redis, replace(entry, result=audit.REFUSED if refused else audit.FAILED, reason=str(exc)))
        raise
    audit.record(store.redis, replace(entry, result=audit.result_of(action, dep), app=dep.app, sha=dep.sha or None,
                                      deployment=dep.id))
    return dep


def _audit_admin_action(store: DeploymentStore, args: argparse.Namespace, action: str, app: str, what: str,
                        act: Callable[[Operator], _T]) -> _T:
    """Check the command's operator against the admin role, run `act`, and audit how it ended (lock, unlock,
    a freeze override)."""
    operator: Operator = args.operator
    entry = audit.AuditEntry(action=action, result=audit.OK, operator=operator.name, app=app,
                             address=CLI_ADDRESS, user_agent=CLI_AGENT)
    try:
        require(operator, Role.ADMIN, what)
        done = act(operator)
    except HooksvcError as exc:
        refused = exc.status_code == 403
        audit.record(store.redis, replace(entry, result=audit.REFUSED if refused else audit.FAILED, reason=str(exc)))
        raise
    reason = getattr(done, "reason", "") or ""
    dep = done if isinstance(done, Deployment) else None
    audit.record(store.redis, replace(entry, reason=str(reason)[:defaults.AUDIT_TEXT_MAX_CHARS],
                                      sha=(dep.sha or None) if dep else None, deployment=dep.id if dep else None))
    return done


def cmd_deploy(config: Config, args: argparse.Namespace) -> int:
    app = _app(config, args.app)
    store = open_store(config)
    override = None
    if args.override_freeze is not None:
        override = _audit_admin_action(
            store, args, audit.OVERRIDE_FREEZE, app.name, f"deploying {app.name} through its freeze window",
            lambda operator: FreezeOverride.asked(operator.name, args.override_freeze))
    dep = _audited(store, args, audit.DEPLOY, f"deploying {app.name}",
                   lambda who: queue_manual(store, app, args.sha or "", app.full_ref(args.ref or ""), who, override))
    return _queued(config, store, dep, args.wait)


def cmd_redeploy(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    app = _app(config, args.app)
    dep = _audited(store, args, audit.REDEPLOY, f"redeploying {app.name}",
                   lambda who: queue_redeploy(store, app, who))
    return _queued(config, store, dep, args.wait)


def cmd_lock(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    app = _app(config, args.app)
    state = _audit_admin_action(store, args, audit.LOCK, app.name, f"locking {app.name}",
                                lambda operator: app_locks.lock(store, app, operator.name, args.reason))
    print(f"{args.app} locked by {state.by}: {state.reason} (its deployments are held until `hooksvc unlock "
          f"{args.app}`)")
    return 0


def cmd_unlock(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    app = _app(config, args.app)
    settled = _audit_admin_action(store, args, audit.UNLOCK, app.name, f"unlocking {app.name}",
                                  lambda operator: app_locks.unlock(store, app))
    print(f"{args.app} unlocked")
    if settled is not None:
        print(f"deployment {settled.id} {'queued' if settled.state is DeploymentState.QUEUED else 'still held: '}"
              f"{settled.error}")
    return 0


def cmd_rollback(config: Config, args: argparse.Namespace) -> int:
    app = _app(config, args.app)
    store = open_store(config)
    dep = _audited(store, args, audit.ROLLBACK, f"rolling back {app.name}",
                   lambda who: queue_rollback(store, app, args.to or "", who))
    return _queued(config, store, dep, args.wait)


def cmd_cancel(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    dep = _audited(store, args, audit.CANCEL, f"cancelling deployment {args.id}",
                   lambda who: store.cancel(args.id, who), deployment=args.id)
    if dep.state is DeploymentState.RUNNING:
        print(f"deployment {dep.id} of {dep.app} is running: cancel requested by {dep.cancel_requested_by}; it "
              f"stops at its next safe point, unless its rollout already replaced the live release (follow it: "
              f"hooksvc logs -f {dep.id})")
    else:
        print(f"deployment {dep.id} of {dep.app} cancelled")
    return 0


def cmd_previews(config: Config, args: argparse.Namespace) -> int:
    """List the app's previews, or (`--remove N`) queue the teardown of pull request N's."""
    app = _app(config, args.app)
    store = open_store(config)
    if args.remove is not None:
        dep = _audited(store, args, audit.REMOVE_PREVIEW, f"removing preview #{args.remove} of {app.name}",
                       lambda who: request_teardown(store, app, args.remove, operator=who))
        return _queued(config, store, dep, args.wait)
    found = PreviewRecords(store.redis).of_app(app.name)
    if not found:
        print(f"{app.name}: no previews" + ("" if app.previews is not None else f" (no [apps.{app.name}.previews])"))
    for preview in found:
        print(f"#{preview.number}  {preview.state:<9}  {preview.sha[:12]}  {preview.url}  "
              f"(last push {iso_time(preview.updated_at)})")
    return 0


def cmd_audit(config: Config, args: argparse.Namespace) -> int:
    require(args.operator, Role.DEPLOYER, "reading the audit trail")
    if args.app:
        _app(config, args.app)
    if not 1 <= args.limit <= defaults.AUDIT_LIST_MAX:
        raise HooksvcError(f"--limit must be from 1 to {defaults.AUDIT_LIST_MAX}, got {args.limit}")
    entries = audit.recent(open_store(config).redis, app=args.app, operator=args.operator_filter, limit=args.limit)
    if args.json:
        for entry in entries:
            print(json.dumps(entry.to_json(), sort_keys=True))
        return 0
    if not entries:
        print("no audit entries" + (" for this filter" if args.app or args.operator_filter else ""))
        return 0
    rows = [["WHEN", "OPERATOR", "ACTION", "APP", "SHA", "DEPLOYMENT", "RESULT", "FROM", "REASON"]]
    for e in entries:
        when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([when, e.operator or "-", e.action, e.app or "-", (e.sha or "-")[:12],
                     f"#{e.deployment}" if e.deployment else "-", e.result, redact.terminal_safe(e.address),
                     redact.terminal_safe(e.reason[:80])])
    print(_table(rows))
    return 0


def cmd_plan(config: Config, args: argparse.Namespace) -> int:
    from hooksvc.plans import request_plan

    app = _app(config, args.app)
    plan = request_plan(open_store(config).redis, app.name, args.sha or "")
    if args.json:
        print(json.dumps(plan, indent=2))
        return 0
    print(f"plan of {plan['app']} at {plan['sha'][:12]} (live: {(plan['live_sha'] or 'nothing')[:12]}, "
          f"strategy {plan['strategy']}); nothing was changed")
    rows = [["SERVICE", "ACTION", "IMAGE", "REASON"]]
    for s in plan["services"]:
        old, new = (_short_image(s["image"]["old"]), _short_image(s["image"]["new"]))
        rows.append([s["service"], s["action"], old if old == new else f"{old} -> {new}", s["reason"]])
    print(_table(rows))
    for orphan in plan["orphans"]:
        print(f"removed: {orphan} (its service is no longer in the compose files)")
    for step in plan["steps"]:
        print(f"release step {step}")
    return 0


def _short_image(image: str | None) -> str:
    """`sha256:0123456789ab…` as its first 12 hex digits; `would build` and unknown ones as they are."""
    if image is None:
        return "-"
    return image.removeprefix("sha256:")[:12] if image.startswith("sha256:") else image


def cmd_logs(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    store.get(args.id)
    if args.follow:
        _follow(store, args.id, print)
    else:
        lines, _ = store.logs.read(args.id)
        for line in lines:
            print(redact.terminal_safe(line))
    return 0


# -- git-hook ------------------------------------------------------------------------------------

def cmd_git_hook_install(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from hooksvc.bare_repo_hook import HookSettings, install

    app = _app(config, args.app)
    if app.host_kind != defaults.PLAIN_GIT_KIND:
        raise HooksvcError(f"app {app.name!r} is served by host {app.host!r} of kind {app.host_kind!r}: "
                           f"git-hook is for apps on a host of kind {defaults.PLAIN_GIT_KIND!r}")
    if args.url and not args.url.startswith(("http://", "https://")):
        raise HooksvcError(f"--url must be hooksvc's http(s) base URL as the git server reaches it, got {args.url!r}")
    host, _, port = config.server.listen.rpartition(":")
    url = args.url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{port}"  # noqa: S104
    settings = HookSettings.for_app(config, app, url, args.wait)
    hook = install(Path(args.repository), settings, app.secret.reveal(), sys.executable)
    print(f"installed {hook}: each push deploys {app.name} through {url}"
          + (", and the pusher sees the deployment's log" if args.wait else ""))
    return 0


def cmd_git_hook_post_receive(args: argparse.Namespace) -> int:
    """Run by hooks an earlier hooksvc installed; the hook now runs `hooksvc.runtime.post_receive` directly."""
    from pathlib import Path

    from hooksvc.runtime.post_receive import run_hook

    return run_hook(Path(args.settings_dir), sys.stdin.read())


# -- status --------------------------------------------------------------------------------------

def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config)
    names = [args.app] if args.app else list(config.apps)
    rows = [["APP", "LIVE", "STATE", "LAST DEPLOYMENT", "QUEUED"]]
    overviews = [app_overview(store, _app(config, name)) for name in names]
    for name, o in zip(names, overviews, strict=True):
        dep = o.last_deployment
        last_text = "-"
        if dep:
            last_text = f"#{dep.id} {dep.trigger} {dep.sha[:12] or dep.ref} {format_ago(dep.created_at) or '-'}"
        rows.append([
            name, (o.live_sha or "-")[:12], o.state or "-", last_text,
            f"#{o.queued_deployment}" if o.queued_deployment else "-",
        ])
    print(_table(rows))
    for name in names:
        gated = waiting_for_checks(store, config.apps[name], store.queued_id(name))
        if gated is not None:
            print(f"{name}: deployment #{gated.deployment_id} ({gated.sha[:12]}) "
                  f"{redact.terminal_safe(gated.waiting_for)} (requires {gated.required}; "
                  f"known: {redact.terminal_safe(gated.describe_checks())})")
    _print_holds(overviews)
    _print_disk_usage(store, names)
    print()
    workers = workers_alive(store.queue)
    waiting = store.queue.count
    print(f"{len(workers)} worker(s) alive, {waiting} deployment(s) waiting in the queue")
    if workers:
        print(_table([["WORKER", "HOST", "PID", "DEPLOYMENT"]] + [
            [w.name, w.host, str(w.pid), f"#{w.deployment_id}" if w.deployment_id else "-"] for w in workers
        ]))
    if args.app:
        running = read_services(store.redis, args.app)
        if running is not None:
            print()
            print(f"services since deployment {running.deployment_id} ({format_ago(running.recorded_at)}):")
            print(_table([["SERVICE", "RUNS"]] + [[s.name, s.runs] for s in running.services]))
        print()
        recent = store.recent(app=args.app, limit=10)
        detail = [["ID", "STATE", "TRIGGER", "SHA", "CREATED", "ERROR"]]
        for dep in recent:
            created = datetime.fromtimestamp(dep.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            detail.append([dep.id, dep.state, dep.trigger, dep.sha[:12] or dep.ref, created,
                           redact.terminal_safe(dep.error[:60])])
        print(_table(detail) if recent else "no deployments yet")
    return 0


def _print_holds(overviews: Sequence[AppOverview]) -> None:
    """Each app's lock with who took it and why, and its freeze windows (the one in force marked)."""
    rows = [["APP", "HELD BY", "SINCE / UNTIL"]]
    for o in overviews:
        if o.lock is not None:
            rows.append([o.name, f"lock: {o.lock.by}: {redact.terminal_safe(o.lock.reason)}", format_ago(o.lock.at)])
        if o.freeze is not None:
            rows.append([o.name, f"freeze window {o.freeze.window} ({o.timezone})",
                         "until " + o.freeze.until.strftime("%a %Y-%m-%d %H:%M %Z")])
        for window in o.windows:
            if o.freeze is None or window != o.freeze.window:
                rows.append([o.name, f"freeze window {window} ({o.timezone}), not in force", "-"])
    if len(rows) > 1:
        print()
        print(_table(rows))


def _print_disk_usage(store: DeploymentStore, names: Sequence[str]) -> None:
    """Disk per app on its worker (release checkouts + built images), as measured after its last deployment."""
    rows = [["APP", "DISK", "CHECKOUTS", "IMAGES", "MEASURED"]]
    for name in names:
        usage = read_disk_usage(store.redis, name)
        rows.append([name, "-", "-", "-", "never deployed"] if usage is None else [
            name, format_bytes(usage.total), format_bytes(usage.checkouts), format_bytes(usage.images),
            format_ago(usage.measured_at)])
    print()
    print(_table(rows))


# -- check-config --------------------------------------------------------------------------------

def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    print(f"{config.path}: configuration valid ({len(config.apps)} apps, {len(config.hosts)} hosts)")
    for warning in config.weak_secrets():
        print(f"  warning: {warning}")
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
    parser.add_argument("--as", dest="as_operator", metavar="NAME",
                        help=f"act as this operator, proven by its token in ${defaults.CLI_TOKEN_ENV} "
                             f"(default: ${defaults.CLI_OPERATOR_ENV}, else the local admin)")
    common.add_argument("--as", dest="as_operator", metavar="NAME", default=argparse.SUPPRESS,
                        help=f"act as this operator, proven by its token in ${defaults.CLI_TOKEN_ENV}")
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

    p.add_argument("--override-freeze", metavar="REASON",
                   help="deploy through the app's freeze window, for this reason (audited)")

    p = sub.add_parser("redeploy", parents=[common],
                       help="deploy the live release again, every service recreated even when unchanged")
    p.add_argument("app")
    p.add_argument("--wait", action="store_true", help="follow progress; exit non-zero unless it succeeds")
    p.set_defaults(func=cmd_redeploy)

    p = sub.add_parser("lock", parents=[common], help="hold the app's deployments until `hooksvc unlock`")
    p.add_argument("app")
    p.add_argument("--reason", required=True, help="why, shown on each held commit (e.g. 'database migration')")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("unlock", parents=[common], help="lift the app's lock; its newest held deployment runs")
    p.add_argument("app")
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser("plan", parents=[common],
                       help="what a deploy of a sha would change (a worker looks; nothing is changed)")
    p.add_argument("app")
    p.add_argument("--sha", help="the commit (default: the head of the app's branch)")
    p.add_argument("--json", action="store_true", help="the API's JSON document")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("rollback", parents=[common], help="redeploy the previous successful release")
    p.add_argument("app")
    p.add_argument("--to", help="a sha to roll back to")
    p.add_argument("--wait", action="store_true", help="follow progress; exit non-zero unless it succeeds")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("previews", parents=[common], help="an app's pull-request previews; --remove N tears one down")
    p.add_argument("app")
    p.add_argument("--remove", type=int, metavar="N", help="queue the teardown of pull request N's preview")
    p.add_argument("--wait", action="store_true", help="with --remove: follow it; exit non-zero unless it succeeds")
    p.set_defaults(func=cmd_previews)

    p = sub.add_parser("status", parents=[common], help="apps, their live sha, recent deployments")
    p.add_argument("app", nargs="?")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", parents=[common], help="a deployment's log")
    p.add_argument("id")
    p.add_argument("--follow", "-f", action="store_true")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("cancel", parents=[common],
                       help="cancel a waiting deployment, or stop a running one at its next safe point")
    p.add_argument("id")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("audit", parents=[common], help="who did what: the audit trail, newest first")
    p.add_argument("--app", help="only this app's entries")
    p.add_argument("--operator", dest="operator_filter", metavar="NAME", help="only this operator's entries")
    p.add_argument("--limit", type=int, default=defaults.AUDIT_LIST_LIMIT, help="entries to show")
    p.add_argument("--json", action="store_true", help="one JSON object per line (the API's shape)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("check-config", parents=[common], help="validate the config; check Redis, Docker and git")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("git-hook", parents=[common], help="push to deploy from a plain bare git repository")
    hook_sub = p.add_subparsers(dest="hook_command", required=True)
    h = hook_sub.add_parser("install", parents=[common], help="write a post-receive hook that deploys APP")
    h.add_argument("repository", metavar="REPO.git", help="path of the bare repository")
    h.add_argument("--app", required=True, help="the app (on a host of kind 'git') each push deploys")
    h.add_argument("--url", help="hooksvc's base URL as the git server reaches it (default: from server.listen)")
    h.add_argument("--wait", action=argparse.BooleanOptionalAction, default=False,
                   help="make each push follow its deployment's log and fail unless it succeeds")
    h.set_defaults(func=cmd_git_hook_install)
    h = hook_sub.add_parser("post-receive", help="what hooks installed by earlier versions run (reads git's ref "
                            "lines on stdin); hooks installed now run python -m hooksvc.runtime.post_receive")
    h.add_argument("settings_dir", help="the hook's settings folder, REPO.git/hooksvc")
    h.set_defaults(without_config=cmd_git_hook_post_receive)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[redact.log_handler()])
    without_config: Callable[[argparse.Namespace], int] | None = getattr(args, "without_config", None)
    if without_config is None and args.command == "run" and not (args.config or os.environ.get(defaults.CONFIG_ENV)):
        from hooksvc.runtime.quickstart import run_quickstart

        without_config = run_quickstart
    if without_config is not None:
        try:
            return without_config(args)
        except HooksvcError as exc:
            print(f"hooksvc: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
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
        args.operator = command_operator(config, args.as_operator)
        result: int = args.func(config, args)
        return result
    except HooksvcError as exc:
        print(f"hooksvc: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
