"""Push to deploy from a plain bare repository: what `hooksvc git-hook install` writes, and what the
`post-receive` hook sends.

The hook lives in `REPO.git/hooks/post-receive` and only names the hooksvc installation that wrote it
(its interpreter, by absolute path) and its settings folder, `REPO.git/hooksvc/`:

    hooksvc/secret         the app's webhook secret (mode 0600: only the repository's owner reads it)
    hooksvc/settings.json  app, hooksvc's URL, whether to wait, where to follow the log (mode 0600)
    hooksvc/pending/       pushes hooksvc could not be told about yet, sent first by the next push

So the secret never appears in the hook's text, in an argv or in the environment of the pusher's shell.
Install writes all of it as the repository's owner and refuses symbolic links and other users' files
on the way (see `install`).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import stat
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hooksvc import defaults
from hooksvc.errors import HooksvcError
from hooksvc.providers.git import SIGNATURE_HEADER, sign

if TYPE_CHECKING:  # the hook runs on every push: it never loads the config's modules or Redis's client
    from hooksvc.config import AppConfig, Config

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
        from hooksvc.connection import RUN_REDIS_RECORD  # see the imports: not on the hook's own path

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
    # Not `hooksvc.cli git-hook post-receive` (still served, for hooks installed before): the command line
    # imports every command's modules, a few tenths of a second on each push.
    command = shlex.join([python, "-m", "hooksvc.runtime.post_receive", str(settings_dir)])
    return (f"#!/bin/sh\n{HOOK_MARK}\n"
            f"# Settings and secret: {settings_dir} (see `hooksvc git-hook install --help`)\n"
            f"exec {command}\n")


def install(repo_dir: Path, settings: HookSettings, secret: str, python: str) -> Path:
    """Write the hook and its settings into the bare repository `repo_dir`; returns the hook's path.

    Whoever can write in the repository may have planted a symbolic link or a file of their own
    where the hook, its settings or its secret go, and install often runs as root: it writes only
    into folders that belong to the user running it, through file descriptors opened without
    following links, and only into files it has just created (then renamed into place). A link or
    another user's file or folder on the way is refused, with the reason.
    """
    repo_dir = Path(os.path.realpath(repo_dir))
    if not (repo_dir / "objects").is_dir() or not (repo_dir / "HEAD").is_file():
        raise HooksvcError(f"{repo_dir} is not a bare git repository (no HEAD and objects/): "
                           "give the path of REPO.git on the git server")
    settings_dir = repo_dir / SETTINGS_DIR
    with contextlib.ExitStack() as fds:
        repo = fds.enter_context(_OwnDirectory.open(repo_dir))
        hooks = fds.enter_context(repo.subdirectory("hooks", mode=0o755))
        hook = repo_dir / "hooks" / HOOK_NAME
        existing = hooks.read_own_file(HOOK_NAME)
        if existing is not None and HOOK_MARK not in existing:
            raise HooksvcError(f"{hook} exists and was not written by hooksvc: move it away (or call it from "
                               "another hook) and install again")
        own = fds.enter_context(repo.subdirectory(SETTINGS_DIR, mode=0o700))
        own.chmod(0o700)
        fds.enter_context(own.subdirectory(PENDING_DIR, mode=0o700))
        own.write_file(SECRET_FILE, secret + "\n", 0o600)
        own.write_file(SETTINGS_FILE, json.dumps(asdict(settings), indent=2) + "\n", 0o600)
        hooks.write_file(HOOK_NAME, hook_script(python, settings_dir), 0o755)
    return hook


class _OwnDirectory:
    """A folder of the running user, held open: every name in it is reached through its descriptor,
    so renaming or replacing the folder's path meanwhile changes nothing."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: Path, parent: _OwnDirectory | None = None) -> _OwnDirectory:
        name = path.name if parent is not None else str(path)
        dir_fd = parent.fd if parent is not None else None
        _refuse_foreign(path, os.stat(name, dir_fd=dir_fd, follow_symlinks=False), "folder", parent is None)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:  # swapped for a link or a file since the check
            raise HooksvcError(f"cannot open the folder {path} ({exc.strerror}): install again") from None
        try:
            _refuse_foreign(path, os.fstat(fd), "folder", parent is None)
        except HooksvcError:
            os.close(fd)
            raise
        return cls(path, fd)

    def __enter__(self) -> _OwnDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def subdirectory(self, name: str, mode: int) -> _OwnDirectory:
        """The folder `name` in this one, created with `mode` when missing."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=self.fd)
        return _OwnDirectory.open(self.path / name, parent=self)

    def chmod(self, mode: int) -> None:
        os.fchmod(self.fd, mode)

    def _check_file(self, name: str) -> os.stat_result | None:
        """The file `name` as it is (None when there is none), refused when it is not the user's own file."""
        try:
            found = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        _refuse_foreign(self.path / name, found, "file")
        return found

    def read_own_file(self, name: str) -> str | None:
        """The text of the user's own file `name`, None when there is none."""
        if self._check_file(name) is None:
            return None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        with os.fdopen(fd, "rb") as f:
            _refuse_foreign(self.path / name, os.fstat(f.fileno()), "file")
            return f.read().decode(errors="replace")

    def write_file(self, name: str, text: str, mode: int) -> None:
        """Replace `name` with a new file holding `text` with `mode` from its first byte on."""
        self._check_file(name)
        tmp = f".{name}.{uuid.uuid4().hex}.tmp"
        # O_EXCL: a new file, never one planted in advance; O_NOFOLLOW: never through a link.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), mode)  # the umask may have narrowed the creation mode
                f.write(text)
            os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise


def _refuse_foreign(path: Path, found: os.stat_result, kind: str, repository: bool = False) -> None:
    """HooksvcError when `found` is a symbolic link, not a `kind`, or belongs to another user."""
    if stat.S_ISLNK(found.st_mode):
        raise HooksvcError(f"{path} is a symbolic link: git-hook install writes only its own files and folders "
                           "inside the repository, never where a link points (possibly outside it); remove "
                           "the link and install again")
    is_kind = stat.S_ISDIR(found.st_mode) if kind == "folder" else stat.S_ISREG(found.st_mode)
    if not is_kind:
        raise HooksvcError(f"{path} is not a {kind}: remove it and install again")
    me = os.geteuid()
    if found.st_uid != me:
        why = (f"{path} belongs to {_user(found.st_uid)}, but git-hook install runs as {_user(me)}: it writes "
               "only into folders and files of the user running it (another user could read the secret or "
               "swap the files)")
        if repository:
            raise HooksvcError(f"{why}. Run it as the repository's owner (the hook runs as the pusher, who must "
                               f"be able to read its settings): `sudo -u {_user_name(found.st_uid)} hooksvc "
                               "git-hook install ...`")
        raise HooksvcError(f"{why}. Remove {path} (hooksvc did not make it) and install again as the "
                           "repository's owner")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def _user(uid: int) -> str:
    return f"uid {uid} ({_user_name(uid)})"


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
