"""The `post-receive` hook of a bare repository (`python -m hooksvc.runtime.post_receive SETTINGS_DIR`, run
by the hook `hooksvc git-hook install` wrote): tell hooksvc about each pushed ref, signed, say to the
pusher what it queued and, with `--wait`, follow each deployment's log until it ends.

Every push waits for this program, so it imports only what sending needs (the standard library, the
hook's settings and the signature); Redis and the store, for following the log, are imported once
the push is sent, while a worker already deploys it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hooksvc.bare_repo_hook import (
    Answer,
    HookSettings,
    RefUpdate,
    load_settings,
    parse_ref_updates,
    pending,
    post_signed,
    push_body,
    send_with_retries,
    spool,
)
from hooksvc.errors import HooksvcError
from workers.bare_repo import is_forced_update


@dataclass
class HookOutcome:
    settings: HookSettings
    #: Deployments hooksvc queued for this push (to follow with --wait).
    queued: list[str] = field(default_factory=list)
    #: True when a push was refused or could not be delivered.
    failed: bool = False


def post_receive(settings_dir: Path, stdin_text: str, say: Callable[[str], None]) -> HookOutcome:
    """Send the kept pushes hooksvc missed, then each ref of this push; report every answer."""
    settings, secret = load_settings(settings_dir)
    outcome = HookOutcome(settings)
    for path, body in pending(settings_dir):
        try:
            answer = post_signed(settings.endpoint, body, secret)
        except OSError:
            break  # still unreachable: they stay kept, this push is tried (and kept) below
        if answer.status == 503:
            break
        say("sending a push kept while hooksvc was unreachable:")
        _report(answer, outcome, say)
        path.unlink()
    repo_dir = settings_dir.parent
    for update in parse_ref_updates(stdin_text):
        body = push_body(settings.repo, update, is_forced_update(repo_dir, update.before, update.after))
        sent = send_with_retries(settings.endpoint, body, secret, say)
        if sent is None:
            kept = spool(settings_dir, body)
            say(f"could not reach hooksvc at {settings.endpoint}: {_short(update)} is NOT deployed yet. It is "
                f"kept in {kept} and sent with the next push; to deploy it now, start hooksvc and run "
                f"`hooksvc deploy {settings.app} --sha {update.after}`")
            outcome.failed = True
            continue
        _report(sent, outcome, say)
    return outcome


def _short(update: RefUpdate) -> str:
    return f"{update.ref} at {update.after[:12]}"


def _report(answer: Answer, outcome: HookOutcome, say: Callable[[str], None]) -> None:
    data = answer.data
    deployments = data.get("deployments")
    if answer.status == 202 and isinstance(deployments, list):
        for d in deployments:
            if isinstance(d, dict):
                outcome.queued.append(str(d.get("id")))
                say(f"deployment {d.get('id')} of {d.get('app')} queued ({str(d.get('sha'))[:12]})")
    elif answer.status == 200 and data.get("duplicate"):
        known = deployments if isinstance(deployments, list) else []
        say("hooksvc already had this push: " + ", ".join(f"deployment {d.get('id')}" for d in known
                                                          if isinstance(d, dict)))
    elif answer.status == 200 and "ignored" in data:
        say(f"not deployed: {data['ignored']}")
    else:
        hint = (" (check that the hook's secret is the app's: run `hooksvc git-hook install` again)"
                if answer.status == 401 else "")
        say(f"hooksvc refused the push: HTTP {answer.status}: {data.get('error', '')}{hint}")
        outcome.failed = True


def run_hook(settings_dir: Path, stdin_text: str, out: Callable[[str], None] | None = None) -> int:
    """The hook: send the push, then follow its deployments when the settings say `wait`. Its exit status."""
    def print_line(line: str) -> None:
        print(line, flush=True)

    emit = out or print_line

    def say(line: str) -> None:
        emit(f"hooksvc: {line}")

    outcome = post_receive(settings_dir, stdin_text, say)
    status = 1 if outcome.failed else 0
    if not (outcome.settings.wait and outcome.queued):
        return status
    # Imported only now (Redis's client takes a few tenths of a second to import): the push is sent.
    from hooksvc.connection import connect
    from hooksvc.operations import wait_for_deployment
    from hooksvc.store import DeploymentStore

    for deployment_id in outcome.queued:
        try:
            store = DeploymentStore(connect(outcome.settings.follow_url()))
            status |= wait_for_deployment(store, deployment_id, outcome.settings.wait_seconds, emit)
        except HooksvcError as exc:
            say(f"cannot follow deployment {deployment_id} ({exc}): see hooksvc's dashboard")
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m hooksvc.runtime.post_receive SETTINGS_DIR`, git's ref lines on stdin."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m hooksvc.runtime.post_receive SETTINGS_DIR (git's ref lines on stdin)",
              file=sys.stderr)
        return 2
    try:
        return run_hook(Path(args[0]), sys.stdin.read())
    except HooksvcError as exc:
        raise SystemExit(f"hooksvc: {exc}") from None  # exit status 1, the message on stderr
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
