"""Push to deploy from a plain bare repository: what `hooksvc git-hook install` writes, and what the
`post-receive` hook sends.

The hook lives in `REPO.git/hooks/post-receive` and only names the hooksvc installation that wrote it
(its interpreter, by absolute path) and its settings folder, `REPO.git/hooksvc/`:

    hooksvc/secret         the app's webhook secret (mode 0600: only the repository's owner reads it)
    hooksvc/settings.json  app, hooksvc's URL, whether to wait, where to follow the log (mode 0600)
    hooksvc/pending/       pushes hooksvc could not be told about yet, sent first by the next push

So the secret never appears in the hook's text, in an argv or in the environment of the pusher's shell.
"""

from __future__ import annotations

import json
import os
import shlex
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from hooksvc import defaults
from hooksvc.config import AppConfig, Config
from hooksvc.connection import RUN_REDIS_RECORD
from hooksvc.errors import HooksvcError
from hooksvc.providers.git import SIGNATURE_HEADER, sign

HOOK_NAME = "post-receive"
SETTINGS_DIR = "hooksvc"
SECRET_FILE = "secret"  # noqa: S105 - a file name, not a secret
SETTINGS_FILE = "settings.json"
PENDING_DIR = "pending"
#: The line that marks a hook as ours: install replaces such a hook, and refuses to replace any other.
HOOK_MARK = "# hooksvc git-hook: deploys on every push"
#: Waits between attempts to reach hooksvc: a restart of `hooksvc serve` takes a few seconds, and a
#: push should not hang much longer than that before the pusher is told.
SEND_RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0)
#: One request to hooksvc: it answers webhooks well within a second.
SEND_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class HookSettings:
    app: str
    repo: str
    url: str
    wait: bool
    #: The Redis the hook follows a deployment's log in (--wait), and how long it follows at most.
    redis_url: str
    wait_seconds: float
    #: When the config names no Redis: the file where `hooksvc run` records its private one, read
    #: when the hook runs (`hooksvc run` need not be running at install time).
    redis_record: str = ""

    def follow_url(self) -> str:
        """The Redis to follow deployments in; HooksvcError when `hooksvc run` recorded none."""
        if not self.redis_record:
            return self.redis_url
        try:
            return Path(self.redis_record).read_text().strip()
        except OSError:
            raise HooksvcError(f"no Redis recorded in {self.redis_record}: is `hooksvc run` running?") from None

    @classmethod
    def for_app(cls, config: Config, app: AppConfig, url: str, wait: bool) -> HookSettings:
        """What a hook deploying `app` through hooksvc at `url` needs of `config`."""
        return cls(app=app.name, repo=app.repo, url=url.rstrip("/"), wait=wait, redis_url=config.redis.url,
                   wait_seconds=config.worker.job_timeout + defaults.WAIT_MARGIN_SECONDS,
                   redis_record=str(config.worker.state_dir / RUN_REDIS_RECORD) if config.redis.implicit else "")

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/hooks/git"


@dataclass(frozen=True)
class RefUpdate:
    """One line of a post-receive hook's input: `<old sha> <new sha> <ref name>`."""

    before: str
    after: str
    ref: str


def parse_ref_updates(text: str) -> list[RefUpdate]:
    updates = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append(RefUpdate(*parts))
    return updates


def push_body(repo: str, update: RefUpdate, forced: bool) -> bytes:
    """The signed request body for one pushed ref (see `hooksvc.providers.git`)."""
    data = {"delivery": uuid.uuid4().hex, "repository": repo, "ref": update.ref,
            "before": update.before, "after": update.after, "forced": forced}
    return json.dumps(data, separators=(",", ":")).encode()


# -- install --------------------------------------------------------------------------------------

def hook_script(python: str, settings_dir: Path) -> str:
    """The hook: run the installing hooksvc's interpreter on this repository's settings."""
    command = shlex.join([python, "-m", "hooksvc.cli", "git-hook", "post-receive", str(settings_dir)])
    return (f"#!/bin/sh\n{HOOK_MARK}\n"
            f"# Settings and secret: {settings_dir} (see `hooksvc git-hook install --help`)\n"
            f"exec {command}\n")


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # the file may have existed with wider permissions
        f.write(text)


def install(repo_dir: Path, settings: HookSettings, secret: str, python: str) -> Path:
    """Write the hook and its settings into the bare repository `repo_dir`; returns the hook's path."""
    if not (repo_dir / "objects").is_dir() or not (repo_dir / "HEAD").is_file():
        raise HooksvcError(f"{repo_dir} is not a bare git repository (no HEAD and objects/): "
                           "give the path of REPO.git on the git server")
    hook = repo_dir / "hooks" / HOOK_NAME
    if hook.exists() and HOOK_MARK not in hook.read_text(errors="replace"):
        raise HooksvcError(f"{hook} exists and was not written by hooksvc: move it away (or call it from "
                           "another hook) and install again")
    settings_dir = (repo_dir / SETTINGS_DIR).resolve()
    settings_dir.mkdir(mode=0o700, exist_ok=True)
    settings_dir.chmod(0o700)
    (settings_dir / PENDING_DIR).mkdir(mode=0o700, exist_ok=True)
    _write_private(settings_dir / SECRET_FILE, secret + "\n")
    _write_private(settings_dir / SETTINGS_FILE, json.dumps(asdict(settings), indent=2) + "\n")
    hook.parent.mkdir(exist_ok=True)
    tmp = hook.with_name(f".{HOOK_NAME}.tmp")
    tmp.write_text(hook_script(python, settings_dir))
    tmp.chmod(0o755)
    tmp.replace(hook)
    return hook


def load_settings(settings_dir: Path) -> tuple[HookSettings, str]:
    """The hook's settings and secret. HooksvcError naming the file when they cannot be read."""
    try:
        data = json.loads((settings_dir / SETTINGS_FILE).read_text())
        secret = (settings_dir / SECRET_FILE).read_text().strip()
        return HookSettings(**data), secret
    except (OSError, ValueError, TypeError) as exc:
        raise HooksvcError(f"cannot read the hook's settings in {settings_dir} ({exc}): "
                           "run `hooksvc git-hook install` again") from None


# -- sending --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    status: int
    data: dict[str, object]


def post_signed(endpoint: str, body: bytes, secret: str) -> Answer:
    """POST one signed push; OSError (URLError included) when hooksvc cannot be reached."""
    request = urllib.request.Request(  # noqa: S310 - the operator's own hooksvc URL
        endpoint, data=body, method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)},
    )
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"error": raw.decode(errors="replace")[:200]}
    return Answer(status, data if isinstance(data, dict) else {})


def send_with_retries(endpoint: str, body: bytes, secret: str, say: Callable[[str], None],
                      sleep: Callable[[float], None] = time.sleep) -> Answer | None:
    """`post_signed`, tried again while hooksvc is unreachable or answers 503; None when it never did."""
    for wait in (*SEND_RETRY_SECONDS, None):
        try:
            answer = post_signed(endpoint, body, secret)
            if answer.status != 503:
                return answer
            problem = f"HTTP 503: {answer.data.get('error', 'unavailable')}"
        except OSError as exc:
            problem = str(getattr(exc, "reason", exc))
        if wait is None:
            return None
        say(f"hooksvc at {endpoint} did not take the push ({problem}); trying again in {wait:g}s")
        sleep(wait)
    return None


def spool(settings_dir: Path, body: bytes) -> Path:
    """Keep a push hooksvc could not be told about; the next push sends it first."""
    path = settings_dir / PENDING_DIR / f"{time.time_ns()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(body)
    tmp.replace(path)
    return path


def pending(settings_dir: Path) -> Iterator[tuple[Path, bytes]]:
    """Kept pushes, oldest first."""
    folder = settings_dir / PENDING_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        yield path, path.read_bytes()
