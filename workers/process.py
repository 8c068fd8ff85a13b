"""The one place that runs subprocesses: an argv list, never a shell, output streamed line by line.

A command never inherits the worker's whole environment: that holds every app's webhook secret, the
API tokens, the git host tokens, REDIS_URL and HOOKSVC_CONFIG, and compose substitutes any of them
into an app's compose file through `${VAR}`. Each command gets the variables named below (the
allow-list), the ones its caller names in `inherit`, and what its caller adds in `env`; nothing else.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workers import cancellation

if TYPE_CHECKING:  # a type only: the post-receive hook runs git through here and loads no Redis client
    from hooksvc.logs import LogFn

log = logging.getLogger("hooksvc.worker")

#: Lines of output kept for error messages.
TAIL_LINES = 40
#: Shorter secrets count only when they are a variable's whole value (or one of its comma-separated
#: items); a longer one anywhere in a value (an `Authorization:` header) marks the variable too.
SCRUB_SUBSTRING_MIN = 8
#: Fields 50 and 51 of /proc/self/stat (Linux 3.5+): where the environment the kernel passed at exec lies.
_STAT_ENV_START, _STAT_ENV_END = 50, 51

# ---- the environment allow-list ---------------------------------------------------------------

#: What every command gets from the worker's environment: PATH to find programs (and compose's
#: `docker-compose`); HOME for ~/.gitconfig, ~/.ssh and ~/.docker (where `docker compose` finds its
#: CLI plugin); USER/LOGNAME, which ssh reads; the locale and time zone, so output and timestamps read
#: as the worker's do; TMPDIR for scratch files; SSH_AUTH_SOCK for an operator's ssh agent (git over
#: SSH, `ssh://` Docker hosts); XDG_RUNTIME_DIR, where rootless Docker and agents keep their sockets;
#: SSL_CERT_FILE/SSL_CERT_DIR, a private CA that OpenSSL- and Go-built programs (git, docker) trust.
#: None of them is a secret.
BASE_ENV: frozenset[str] = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSH_AUTH_SOCK", "XDG_RUNTIME_DIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR",
})
#: Prefixes every command gets too: the locale categories (LC_ALL, LC_CTYPE, LC_MESSAGES, ...).
BASE_ENV_PREFIXES: tuple[str, ...] = ("LC_",)

#: The Docker CLI's and compose's own settings, for compose commands: which engine (DOCKER_HOST,
#: DOCKER_CONTEXT), its TLS (DOCKER_TLS, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), the CLI's config
#: directory (DOCKER_CONFIG: CLI plugins, registry logins kept on disk), the API version, the builder
#: (DOCKER_BUILDKIT, BUILDX_BUILDER), the platform and compose v1's client timeout. Named one by one:
#: `DOCKER_*` as a prefix would also pass DOCKER_CONTENT_TRUST_*_PASSPHRASE or a CI system's
#: DOCKER_PASSWORD / DOCKER_AUTH_CONFIG. COMPOSE_* is not passed either: every command names its
#: project and files itself.
DOCKER_ENV: frozenset[str] = frozenset({
    "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS", "DOCKER_TLS_VERIFY",
    "DOCKER_API_VERSION", "DOCKER_BUILDKIT", "BUILDX_BUILDER", "DOCKER_DEFAULT_PLATFORM", "DOCKER_CLIENT_TIMEOUT",
})

#: Git's transport settings an operator may give the worker, for git commands: the CA bundle, the
#: ssh program, slow-transfer limits and which config files git reads. Not GIT_CONFIG_COUNT/KEY/VALUE
#: (an `http.extraHeader` there is a git host token), GIT_ASKPASS or anything else: an app's own
#: clone credentials are added by workers/git.py for its own commands only.
GIT_ENV: frozenset[str] = frozenset({
    "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_PROXY_COMMAND",
    "GIT_HTTP_LOW_SPEED_LIMIT", "GIT_HTTP_LOW_SPEED_TIME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM",
})
#: Proxies, for git commands only: a worker behind an HTTP proxy must still fetch. Compose does not
#: get them: pulls and builds are made by the Docker engine, which has its own proxy settings, and a
#: proxy URL may carry the proxy's password.
PROXY_ENV: frozenset[str] = frozenset({
    "http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
})


def command_env(
    inherit: Collection[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one command: the worker's `BASE_ENV` variables (and `LC_*`), those named in
    `inherit`, then `env` on top. `environ` stands for the worker's environment (default `os.environ`)."""
    source = os.environ if environ is None else environ
    names = BASE_ENV | frozenset(inherit)
    chosen = {k: v for k, v in source.items() if k in names or k.startswith(BASE_ENV_PREFIXES)}
    return {**chosen, **(env or {})}


def holds_secret(value: str, secrets: Collection[str]) -> bool:
    """True when an environment value is a secret, lists one (`a,b`), or carries a long one inside it."""
    items = {value.strip(), *(part.strip() for part in value.split(","))}
    return any(s in items or (len(s) >= SCRUB_SUBSTRING_MIN and s in value) for s in secrets if s)


def scrub_environ(secrets: Collection[str], environ: dict[str, str] | None = None) -> list[str]:
    """Remove every variable holding a secret from this process's environment, once the config has it.

    `os.environ` alone is not enough: `/proc/<pid>/environ` shows the block the kernel passed at
    exec, which unsetenv never touches, so the secrets' bytes there are overwritten too (Linux).
    Forks made afterwards (RQ's work horses) inherit the scrubbed memory. Returns the names removed.
    """
    target = os.environ if environ is None else environ
    names = sorted(name for name, value in target.items() if holds_secret(value, secrets))
    for name in names:
        del target[name]
    if environ is None:
        _overwrite_initial_environ(secrets)
    return names


def _overwrite_initial_environ(secrets: Collection[str]) -> None:
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        # `fields` starts at field 3 (the state); the kernel numbers fields from 1.
        start, end = int(fields[_STAT_ENV_START - 3]), int(fields[_STAT_ENV_END - 3])
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            offset = 0
            for entry in block.split(b"\0"):
                name, sep, value = entry.partition(b"=")
                if sep and holds_secret(value.decode("utf-8", "replace"), secrets):
                    mem.seek(start + offset + len(name) + 1)
                    mem.write(b"\0" * len(value))
                offset += len(entry) + 1
    except (OSError, IndexError, ValueError) as exc:
        log.warning("could not overwrite the secrets in this process's initial environment block "
                    "(/proc/self/environ): %s", exc)


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int
    #: The last lines of combined stdout and stderr.
    tail: tuple[str, ...]
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    inherit: Collection[str] = (),
    log: LogFn | None = None,
    timeout: float | None = None,
    capture: bool = False,
    stdin: bytes | None = None,
    cancellable: bool = False,
) -> ProcessResult:
    """Run `argv`, sending each output line to `log` as it comes; never raises on a non-zero exit.

    The command's environment is `command_env(inherit, env)`: the allow-listed variables of the
    worker's environment, those named in `inherit`, and `env`; never the rest. `capture` keeps the
    whole output (for commands whose output is parsed); otherwise only the tail is kept. A command
    still running after `timeout` seconds is killed and reported with return code -9.

    `cancellable`: an operator's cancel of the deployment this process runs (`workers.cancellation`)
    kills the command and every process it started, and raises DeploymentCancelled once it is gone;
    a cancel that came before it starts raises at once.
    """
    stop = cancellation.active() if cancellable else cancellation.NOT_CANCELLABLE
    stop.check()
    full_env = command_env(inherit, env)
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    captured: list[str] = []
    killed = threading.Event()

    def kill_after_timeout() -> None:
        if timeout is not None and proc.poll() is None:
            killed.set()
            proc.kill()

    timer = threading.Timer(timeout, kill_after_timeout) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        with stop.killable(proc.pid):
            assert proc.stdout is not None  # noqa: S101 - set by stdout=PIPE above
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                tail.append(line)
                if capture:
                    captured.append(line)
                if log is not None:
                    log(line)
        # Reaped only once out of the killable block: a reaped pid may be reused by another process.
        returncode = proc.wait()
        stop.check()
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if killed.is_set():
        returncode = -9
        if log is not None:
            log(f"killed after {timeout:.0f}s: {argv[0]}")
    return ProcessResult(
        argv=tuple(argv),
        returncode=returncode,
        tail=tuple(tail),
        output="\n".join(captured),
        seconds=time.monotonic() - started,
    )
