"""Configuration: one TOML file into one frozen, validated `Config`.

Every problem is collected and reported together, each naming the file and the key, so an operator
fixes a config in one round. Secrets are never in the file: each is read from an environment
variable (`*_env`) or a file (`*_file`, for Docker secrets).
"""

from __future__ import annotations

import fnmatch
import math
import os
import posixpath
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from hooksvc import defaults
from hooksvc.ci_checks import ALL, CheckRequirement
from hooksvc.errors import ConfigError
from hooksvc.freeze import Freeze, FreezeWindow, frozen_at, parse_window, zone
from hooksvc.operators import API_TOKEN_ROLE, Operator, Role, api_token_name, parse_role
from hooksvc.previews import (
    ENVIRONMENT_FIELDS,
    LABEL_FIELDS,
    ON_MAX_CHOICES,
    URL_FIELDS,
    PreviewsConfig,
    check_template,
    parse_port_range,
)
from hooksvc.providers import HOST_KINDS
from hooksvc.release_steps import PHASES, ReleaseStep, read_release_steps
from hooksvc.strategies import STRATEGIES, strategy_info


class Secret:
    """A secret value that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class OidcConfig:
    """`[server.oidc]`: single sign-on through an OpenID Connect provider (SPEC §11)."""

    issuer: str
    client_id: str
    client_secret: Secret
    #: role -> claims that grant it: `group:NAME` (in the groups claim), `user:NAME`, `email:ADDRESS`, `*`.
    roles: Mapping[Role, tuple[str, ...]]
    scopes: str = defaults.OIDC_SCOPES
    #: The claim whose value names the operator (falls back to `sub`).
    name_claim: str = defaults.OIDC_NAME_CLAIM
    groups_claim: str = defaults.OIDC_GROUPS_CLAIM

    def role_for(self, claims: Mapping[str, Any]) -> Role | None:
        """The highest role whose patterns match the ID token's claims; None when none does."""
        groups = claims.get(self.groups_claim) or []
        held = {"*"} | {f"group:{g}" for g in (groups if isinstance(groups, list) else [groups]) if isinstance(g, str)}
        for claim, kind in ((self.name_claim, "user"), ("preferred_username", "user"), ("email", "email")):
            if isinstance(claims.get(claim), str):
                held.add(f"{kind}:{claims[claim]}")
        if "email" in claims and claims.get("email_verified") is False:
            held.discard(f"email:{claims['email']}")  # an unverified address proves nothing
        for role in sorted(Role, key=lambda r: r.rank, reverse=True):
            if held & set(self.roles.get(role, ())):
                return role
        return None


@dataclass(frozen=True)
class ServerConfig:
    listen: str = defaults.LISTEN
    public_url: str = ""
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    api_tokens: tuple[Secret, ...] = ()
    public_read: bool = False
    oidc: OidcConfig | None = None


@dataclass(frozen=True)
class RedisConfig:
    url: str = defaults.REDIS_URL
    #: True when neither the file nor $REDIS_URL named a server: `hooksvc run` may start its own.
    implicit: bool = True


@dataclass(frozen=True)
class WorkerConfig:
    state_dir: Path = Path(defaults.STATE_DIR)
    keep_releases: int = defaults.KEEP_RELEASES
    job_timeout: float = defaults.JOB_TIMEOUT_SECONDS
    keep_deployments: int = defaults.KEEP_DEPLOYMENTS


@dataclass(frozen=True)
class GitHubAppConfig:
    """A GitHub App's credentials: a JWT signed with `private_key` is traded for installation tokens."""

    app_id: int
    #: The PEM text of the App's RSA private key (`private_key_file`), checked to parse as one.
    private_key: Secret = field(repr=False)
    private_key_file: Path
    #: The installation to use for every repository; None: asked of GitHub per repository.
    installation_id: int | None = None


@dataclass(frozen=True)
class HostConfig:
    name: str
    kind: str
    api_url: str
    token: Secret | None = None
    #: GitHub App credentials, instead of `token` (a host has one or the other).
    app: GitHubAppConfig | None = None

    @property
    def has_credentials(self) -> bool:
        """True when hooksvc may call the host's API: a token or App credentials are configured."""
        return self.token is not None or self.app is not None


@dataclass(frozen=True)
class NotifyConfig:
    """Where an app's final states are announced."""

    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    slack_url: Secret | None = None


@dataclass(frozen=True)
class AppConfig:
    name: str
    host: str
    host_kind: str
    repo: str
    clone_url: str
    secret: Secret
    branch: str | None = "main"
    tags: str | None = None
    compose_files: tuple[str, ...] = ("docker-compose.yml",)
    project: str = ""
    strategy: str = defaults.STRATEGY
    health_timeout: float = defaults.HEALTH_TIMEOUT_SECONDS
    start_grace: float = defaults.START_GRACE_SECONDS
    status_context: str = ""
    docker_host: str | None = None
    #: `HOST:PORT` of the registry a swarm app's release images are pushed to (strategy swarm).
    registry: str | None = None
    paths: tuple[str, ...] = ()
    poll_interval: float | None = None
    ssh_key_file: Path | None = None
    clone_token: Secret | None = None
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    #: The environment of GitHub/GitLab deployments ("" records none); the app name by default.
    environment: str = ""
    #: Where the environment is reached, shown on the host's deployment (GitHub `environment_url`).
    environment_url: str | None = None
    #: Commands run in one-off containers of the new release before any container is replaced.
    pre_deploy: tuple[ReleaseStep, ...] = ()
    #: Commands run the same way once the new release is live.
    post_deploy: tuple[ReleaseStep, ...] = ()
    #: The checks a pushed commit must pass before it deploys (None: deploy at once).
    require_checks: CheckRequirement | None = None
    #: How long a gated push waits for its checks, from its arrival.
    checks_timeout: float = defaults.CHECKS_TIMEOUT_SECONDS
    #: When deployments are held (`hooksvc.freeze`), read in `timezone`.
    freeze: tuple[FreezeWindow, ...] = ()
    timezone: str = defaults.TIMEZONE
    #: `[apps.NAME.previews]`: pull-request previews (None: the app has none).
    previews: PreviewsConfig | None = None

    def frozen_at(self, at: datetime) -> Freeze | None:
        """The freeze window in force at the aware time `at`, if any."""
        if not self.freeze:
            return None
        return frozen_at(self.freeze, zone(self.timezone), at)

    def matches_ref(self, ref: str) -> bool:
        """True when a full ref (`refs/heads/x`, `refs/tags/v1`) is one this app deploys."""
        if self.tags is not None:
            prefix, pattern = "refs/tags/", self.tags
        else:
            prefix, pattern = "refs/heads/", self.branch or ""
        return ref.startswith(prefix) and fnmatch.fnmatchcase(ref[len(prefix):], pattern)

    @property
    def single_branch(self) -> bool:
        """True when the app deploys one exact branch, so "the head" names one commit."""
        return self.tags is None and not is_glob(self.branch or "")

    def full_ref(self, ref: str) -> str:
        """An operator's short ref made full: `main` → `refs/heads/main` (`refs/tags/v1` for an app
        that deploys tags); a full ref or "" unchanged."""
        if not ref or ref.startswith("refs/"):
            return ref
        return f"refs/tags/{ref}" if self.tags is not None else f"refs/heads/{ref}"

    @property
    def ref_pattern(self) -> str:
        """The full-ref glob this app deploys, e.g. `refs/heads/main`."""
        return f"refs/tags/{self.tags}" if self.tags is not None else f"refs/heads/{self.branch}"


@dataclass(frozen=True)
class OperatorConfig:
    """`[operators.NAME]`: a person (or a machine) with a token of their own and a role."""

    name: str
    role: Role
    token: Secret


@dataclass(frozen=True)
class Config:
    path: str
    server: ServerConfig
    redis: RedisConfig
    worker: WorkerConfig
    hosts: Mapping[str, HostConfig]
    apps: Mapping[str, AppConfig]
    operators: Mapping[str, OperatorConfig] = field(default_factory=dict)

    def app(self, name: str) -> AppConfig | None:
        return self.apps.get(name)

    def credentials(self) -> list[tuple[Operator, str]]:
        """Every operator that logs in with a token, and its token: `[operators.*]`, then each of
        `server.api_tokens` as an admin named token-1, token-2, …."""
        found = [(Operator(o.name, o.role), o.token.reveal()) for o in self.operators.values()]
        found += [(Operator(api_token_name(n), API_TOKEN_ROLE), t.reveal())
                  for n, t in enumerate(self.server.api_tokens, 1)]
        return found

    def weak_secrets(self) -> list[str]:
        """Warnings for chosen secrets shorter than MIN_SECRET_CHARACTERS (webhook and notification
        secrets: accepted, since hosts accept them, but guessable). Lengths only, never a character."""
        warnings = []
        for app in self.apps.values():
            for what, secret in (("webhook secret", app.secret), ("notification secret", app.notify.webhook_secret)):
                if secret is not None and len(secret.reveal()) < defaults.MIN_SECRET_CHARACTERS:
                    warnings.append(
                        f"apps.{app.name}: its {what} has {len(secret.reveal())} characters: whoever guesses it can "
                        f"{'deploy' if what == 'webhook secret' else 'forge the notifications of'} {app.name}; use "
                        f"{defaults.MIN_SECRET_CHARACTERS} or more (`openssl rand -hex 32`) here and on the other side")
        return warnings

    def secrets(self) -> list[str]:
        """Every secret value this config holds, for redaction of logs."""
        found: list[Secret | None] = list(self.server.api_tokens)
        found += [self.server.oidc.client_secret] if self.server.oidc else []
        found += [o.token for o in self.operators.values()]
        found += [h.token for h in self.hosts.values()]
        found += [h.app.private_key for h in self.hosts.values() if h.app is not None]
        for app in self.apps.values():
            found += [app.secret, app.clone_token, app.notify.webhook_secret, app.notify.slack_url]
        return [s.reveal() for s in found if s is not None and s.reveal()]


def is_glob(pattern: str) -> bool:
    """True when a branch or tag pattern has glob characters (and so may name many refs)."""
    return any(c in pattern for c in "*?[")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*")
#: What GitLab accepts as an environment name (GitHub accepts more), at most 255 characters.
_ENVIRONMENT = re.compile(r"(?!/)[A-Za-z0-9_.\-/ ${}]{1,255}(?<!/)")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


def parse_duration(value: object) -> float:
    """Seconds from `30`, `"30s"`, `"1.5m"`, `"2h"` or `"250ms"`; ValueError otherwise.

    The result is finite, positive and at most `defaults.MAX_DURATION_SECONDS`: TOML's `inf` and
    `nan` (or a number too long for a float) would reach waits and `int()` calls that cannot take them.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s', got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond a float's range
            seconds = math.inf
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a duration like '30s', '5m' or a number of seconds, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    if seconds > defaults.MAX_DURATION_SECONDS:
        raise ValueError(
            f"expected at most {defaults.MAX_DURATION_SECONDS / 3600:g}h "
            f"({defaults.MAX_DURATION_SECONDS:g} seconds), got {value!r}"
        )
    return seconds


#: User names that are tokens: the prefixes of GitHub's tokens (ghp_, gho_, ghu_, ghs_, ghr_,
#: github_pat_) and GitLab's (glpat-, gldt-, gloas-, ...), or 32 and more token characters in a row
#: (Gitea's and Forgejo's tokens are 40 hex digits; no git host's user names are that long and plain).
_TOKEN_USER = re.compile(
    r"^(?:gh[pousr]_|github_pat_|gl(?:pat|dt|oas|rt|cbt|ptt|ft|imt|agent|soat)-)|^[A-Za-z0-9_-]{32,}$"
)


def clone_url_credentials(url: str) -> str | None:
    """What credentials `url` carries (`"a password"`, `"a token"`), or None.

    A user name alone is fine (`ssh://git@host/...`, `git@host:owner/repo.git`,
    `https://gitlab+deploy-token-1@host/...`); a password or a token in the URL would show in `ps`
    while git runs and in every log line quoting the URL.
    """
    if "://" in url:
        netloc = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    elif re.match(r"^[^/]*:", url):  # scp-like `[user@]host:path`
        netloc = url.split("/", 1)[0]
    else:  # a local path
        return None
    userinfo = netloc.rpartition("@")[0]
    if not userinfo:
        return None
    if ":" in userinfo or ":" in unquote(userinfo):
        return "a password"
    if _TOKEN_USER.search(unquote(userinfo)):
        return "a token"
    return None


class _Reader:
    """Reads one table of the file, recording each problem as `file: key: message`."""

    def __init__(self, path: str, problems: list[str], env: Mapping[str, str]) -> None:
        self.path = path
        self.problems = problems
        self.env = env

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.path}: {key}: {message}")

    def table(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, got {type(value).__name__}")
            return {}
        return value

    def named_tables(self, data: Mapping[str, Any], key: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Each `[key.NAME]` table: its name, its key (`key.NAME`) and its contents; a NAME that is not a
        table is a problem and skipped."""
        for name, t in self.table(data, key).items():
            if not isinstance(t, dict):
                self.problem(f"{key}.{name}", f"expected a table, got {type(t).__name__}")
                continue
            yield name, f"{key}.{name}", t

    def unknown_keys(self, data: Mapping[str, Any], prefix: str, known: set[str]) -> None:
        for key in sorted(set(data) - known):
            name = f"{prefix}.{key}" if prefix else key
            self.problem(name, f"unknown key (known: {', '.join(sorted(known))})")

    def get(self, data: Mapping[str, Any], prefix: str, key: str, kind: type, default: Any) -> Any:
        if key not in data:
            return default
        value = data[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            self.problem(f"{prefix}.{key}", f"expected {kind.__name__}, got {value!r}")
            return default
        return value

    def duration(self, data: Mapping[str, Any], prefix: str, key: str, default: float) -> float:
        if key not in data:
            return default
        try:
            return parse_duration(data[key])
        except ValueError as exc:
            self.problem(f"{prefix}.{key}", str(exc))
            return default

    def secret(self, data: Mapping[str, Any], prefix: str, stem: str, required: bool) -> Secret | None:
        """A secret from `<stem>_env` (a variable name) or `<stem>_file` (a path); never from the file."""
        if stem in data:
            self.problem(
                f"{prefix}.{stem}",
                f"secrets may not be written in the config file: use {stem}_env or {stem}_file",
            )
        env_name = self.get(data, prefix, f"{stem}_env", str, None)
        file_name = self.get(data, prefix, f"{stem}_file", str, None)
        if env_name and file_name:
            self.problem(f"{prefix}.{stem}_env", f"give either {stem}_env or {stem}_file, not both")
            return None
        if env_name:
            value = self.env.get(env_name, "")
            if not value:
                self.problem(f"{prefix}.{stem}_env", f"environment variable {env_name} is not set or empty")
                return None
            return Secret(value)
        if file_name:
            try:
                value = Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problem(f"{prefix}.{stem}_file", f"cannot read {file_name}: {exc.strerror}")
                return None
            if not value:
                self.problem(f"{prefix}.{stem}_file", f"{file_name} is empty")
                return None
            return Secret(value)
        if required:
            self.problem(f"{prefix}.{stem}_env", f"required: set {stem}_env or {stem}_file")
        return None


_SERVER_KEYS = {"listen", "public_url", "max_body_bytes", "api_tokens_env", "api_tokens_file", "public_read", "oidc"}
_OIDC_KEYS = {"issuer", "client_id", "client_secret_env", "client_secret_file", "roles", "scopes", "name_claim",
              "groups_claim"}
_ROLE_PATTERN = re.compile(r"\*|(group|user|email):.+")


def _read_oidc(r: _Reader, server: Mapping[str, Any], public_url: str) -> OidcConfig | None:
    if "oidc" not in server:
        return None
    t = r.table(server, "server.oidc")
    r.unknown_keys(t, "server.oidc", _OIDC_KEYS)
    issuer = r.get(t, "server.oidc", "issuer", str, "").rstrip("/")
    if not issuer.startswith(("https://", "http://")):
        r.problem("server.oidc.issuer", f"required: the provider's issuer URL (https://…), got {issuer!r}")
    client_id = r.get(t, "server.oidc", "client_id", str, "")
    if not client_id:
        r.problem("server.oidc.client_id", "required: the client id the provider gave hooksvc")
    if not public_url:
        r.problem("server.oidc", "needs server.public_url: the provider sends browsers back to "
                                 "PUBLIC_URL/login/oidc/callback")
    secret = r.secret(t, "server.oidc", "client_secret", required=True)
    roles: dict[Role, tuple[str, ...]] = {}
    raw_roles = r.get(t, "server.oidc", "roles", dict, {})
    if not raw_roles:
        r.problem("server.oidc.roles", 'required: which claims grant which role, e.g. { deployer = ["group:dev"] }')
    for name, patterns in raw_roles.items():
        key = f"server.oidc.roles.{name}"
        try:
            role = parse_role(name)
        except ValueError as exc:
            r.problem(key, str(exc))
            continue
        valid = isinstance(patterns, list) and all(isinstance(p, str) and _ROLE_PATTERN.fullmatch(p) for p in patterns)
        if not valid:
            r.problem(key, f'expected a list of "group:NAME", "user:NAME", "email:ADDRESS" or "*", got {patterns!r}')
            continue
        roles[role] = tuple(patterns)
    if secret is None or not issuer or not client_id:
        return None
    return OidcConfig(
        issuer=issuer, client_id=client_id, client_secret=secret, roles=roles,
        scopes=r.get(t, "server.oidc", "scopes", str, defaults.OIDC_SCOPES),
        name_claim=r.get(t, "server.oidc", "name_claim", str, defaults.OIDC_NAME_CLAIM),
        groups_claim=r.get(t, "server.oidc", "groups_claim", str, defaults.OIDC_GROUPS_CLAIM),
    )
_WORKER_KEYS = {"state_dir", "keep_releases", "job_timeout", "keep_deployments"}
_HOST_KEYS = {"kind", "api_url", "token_env", "token_file", *defaults.GITHUB_APP_KEYS}
_APP_KEYS = {
    "host", "repo", "clone_url", "branch", "tags", "secret_env", "secret_file", "compose_files",
    "registry",
    "project", "strategy", "health_timeout", "start_grace", "status_context", "docker_host", "paths",
    "poll_interval", "ssh_key_file", "token_env", "token_file", "notify_url", "notify_secret_env",
    "notify_secret_file", "slack_url_env", "slack_url_file",
    "environment", "environment_url", "require_checks", "checks_timeout", "freeze", "timezone", "previews",
    *PHASES,
}
_PREVIEW_KEYS = {"enabled", "url", "service", "ports", "labels", "max", "on_max", "ttl", "services", "environment",
                 "allow_forks"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_listen(r: _Reader, key: str, value: str) -> None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        r.problem(key, f"expected HOST:PORT, got {value!r}")


def _read_server(r: _Reader, data: Mapping[str, Any]) -> ServerConfig:
    t = r.table(data, "server")
    r.unknown_keys(t, "server", _SERVER_KEYS)
    listen = r.get(t, "server", "listen", str, defaults.LISTEN)
    _check_listen(r, "server.listen", listen)
    public_url = r.get(t, "server", "public_url", str, "").rstrip("/")
    if public_url and not public_url.startswith(("http://", "https://")):
        r.problem("server.public_url", f"expected an http(s) URL, got {public_url!r}")
    max_body = r.get(t, "server", "max_body_bytes", int, defaults.MAX_BODY_BYTES)
    if max_body <= 0:
        r.problem("server.max_body_bytes", f"expected a positive number of bytes, got {max_body!r}")
    explicit = "api_tokens_env" in t or "api_tokens_file" in t
    if not explicit and r.env.get(defaults.API_TOKENS_ENV):
        t = {**t, "api_tokens_env": defaults.API_TOKENS_ENV}
    # Without tokens the API and pages refuse every request (unless public_read allows reading).
    raw = r.secret(t, "server", "api_tokens", required=False)
    tokens = tuple(Secret(tok.strip()) for tok in (raw.reveal() if raw else "").split(",") if tok.strip())
    source = "server.api_tokens_file" if "api_tokens_file" in t else "server.api_tokens_env"
    for n, token in enumerate(tokens, 1):
        if len(token.reveal()) < defaults.MIN_SECRET_CHARACTERS:
            # Which token and how long, never any of its characters.
            r.problem(source, f"API token {n} of {len(tokens)} has {len(token.reveal())} characters: a bearer token "
                              f"needs at least {defaults.MIN_SECRET_CHARACTERS} (make one with `openssl rand -hex 16`)")
    return ServerConfig(
        listen=listen,
        public_url=public_url,
        max_body_bytes=max_body,
        api_tokens=tokens,
        public_read=r.get(t, "server", "public_read", bool, False),
        oidc=_read_oidc(r, t, public_url),
    )


def _read_redis(r: _Reader, data: Mapping[str, Any]) -> RedisConfig:
    t = r.table(data, "redis")
    r.unknown_keys(t, "redis", {"url"})
    from_env = r.env.get(defaults.REDIS_URL_ENV)
    url = from_env or r.get(t, "redis", "url", str, defaults.REDIS_URL)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        r.problem("redis.url", f"expected a redis://, rediss:// or unix:// URL, got {url!r}")
    return RedisConfig(url=url, implicit=not from_env and "url" not in t)


def _read_worker(r: _Reader, data: Mapping[str, Any]) -> WorkerConfig:
    t = r.table(data, "worker")
    r.unknown_keys(t, "worker", _WORKER_KEYS)
    keep = r.get(t, "worker", "keep_releases", int, defaults.KEEP_RELEASES)
    if keep < 1:
        r.problem("worker.keep_releases", f"expected at least 1, got {keep!r}")
    keep_deployments = r.get(t, "worker", "keep_deployments", int, defaults.KEEP_DEPLOYMENTS)
    if keep_deployments < 1:
        r.problem("worker.keep_deployments", f"expected at least 1, got {keep_deployments!r}")
    return WorkerConfig(
        state_dir=Path(r.get(t, "worker", "state_dir", str, defaults.STATE_DIR)),
        keep_releases=keep,
        job_timeout=r.duration(t, "worker", "job_timeout", defaults.JOB_TIMEOUT_SECONDS),
        keep_deployments=keep_deployments,
    )


def _read_hosts(r: _Reader, data: Mapping[str, Any], public_url: str) -> dict[str, HostConfig]:
    hosts: dict[str, HostConfig] = {}
    for name, prefix, t in r.named_tables(data, "hosts"):
        r.unknown_keys(t, prefix, _HOST_KEYS)
        kind = r.get(t, prefix, "kind", str, "")
        known = HOST_KINDS.get(kind)
        if known is None:
            r.problem(f"{prefix}.kind", f"expected one of {', '.join(HOST_KINDS)}, got {kind!r}")
        api_url = r.get(t, prefix, "api_url", str, "").rstrip("/")
        # A host without a status API (a plain git server, Gogs) needs no api_url: nothing posts back.
        optional = known is not None and not known.statuses and not api_url
        if not optional and not api_url.startswith(("http://", "https://")):
            r.problem(f"{prefix}.api_url", f"expected an http(s) URL, got {api_url!r}")
        token = r.secret(t, prefix, "token", required=False)
        if known is not None and known.status_link and token is not None and not public_url:
            r.problem(f"{prefix}.token", f"{kind} takes no status without a link to the deployment: set "
                                         "[server] public_url, or give no token to send no statuses")
        app = _read_github_app(r, t, prefix, kind)
        if app is not None and ("token_env" in t or "token_file" in t):
            r.problem(f"{prefix}.app_id", "give either a token (token_env/token_file) or GitHub App credentials "
                                          "(app_id, private_key_file), not both")
        hosts[name] = HostConfig(name=name, kind=kind, api_url=api_url, token=token, app=app)
    return hosts


def _read_github_app(r: _Reader, t: Mapping[str, Any], prefix: str, kind: str) -> GitHubAppConfig | None:
    """`app_id`, `private_key_file` and `installation_id` of a `[hosts.*]` table; None when it has none."""
    given = sorted(k for k in defaults.GITHUB_APP_KEYS if k in t)
    if not given:
        return None
    before = len(r.problems)
    if kind not in defaults.GITHUB_APP_KINDS:
        r.problem(f"{prefix}.{given[0]}", f"GitHub App credentials are for kind = \"github\" hosts, not {kind!r}")
    app_id = r.get(t, prefix, "app_id", int, 0)
    if "app_id" not in t:
        r.problem(f"{prefix}.app_id", "required with private_key_file: the App's id (its settings page, \"App ID\")")
    elif app_id <= 0:
        r.problem(f"{prefix}.app_id", f"expected the App's numeric id, got {t['app_id']!r}")
    installation_id = r.get(t, prefix, "installation_id", int, None)
    if installation_id is not None and installation_id <= 0:
        r.problem(f"{prefix}.installation_id", f"expected a positive installation id, got {installation_id!r}")
    key_file = r.get(t, prefix, "private_key_file", str, "")
    key = _read_private_key(r, f"{prefix}.private_key_file", key_file) if "private_key_file" in t else None
    if "private_key_file" not in t:
        r.problem(f"{prefix}.private_key_file", "required with app_id: the PEM file GitHub let you download "
                                                "(\"Generate a private key\" on the App's settings page)")
    if len(r.problems) > before or key is None:
        return None
    return GitHubAppConfig(app_id=app_id, private_key=key, private_key_file=Path(key_file),
                           installation_id=installation_id)


def _read_private_key(r: _Reader, key: str, path: str) -> Secret | None:
    """The PEM text of an RSA private key at `path`. Problems name the file, never its content."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not path:
        r.problem(key, "expected the path of the App's private key (a .pem file)")
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        r.problem(key, f"cannot read {path}: {exc.strerror}")
        return None
    try:
        parsed = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # Neither the library's message nor the bytes: they could quote the key.
        r.problem(key, f"{path} is not an unencrypted PEM private key (GitHub's \"Generate a private key\" "
                       "gives one: -----BEGIN RSA PRIVATE KEY-----)")
        return None
    if not isinstance(parsed, RSAPrivateKey):
        r.problem(key, f"{path} holds a {type(parsed).__name__.lstrip('_')}, not an RSA private key: GitHub Apps "
                       "sign with RS256")
        return None
    return Secret(data.decode("ascii", "replace"))


def _relative_inside(path: str) -> bool:
    """True for a relative path that stays inside the repository once normalised."""
    norm = posixpath.normpath(path)
    return bool(path) and not posixpath.isabs(path) and norm != ".." and not norm.startswith("../")


#: `registry`: a host name or IPv4 address, then a port; no scheme, path or credentials.
_REGISTRY_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REGISTRY = re.compile(rf"^{_REGISTRY_LABEL}(?:\.{_REGISTRY_LABEL})*:(\d{{1,5}})$")


def _read_registry(r: _Reader, t: Mapping[str, Any], prefix: str, strategy: str) -> str | None:
    registry: str | None = r.get(t, prefix, "registry", str, None)
    if registry is None:
        return None
    match = _REGISTRY.fullmatch(registry)
    if match is None or not 0 < int(match.group(1)) < 65536:
        r.problem(f"{prefix}.registry", f"expected HOST:PORT of a registry, such as 'registry.example.com:5000' "
                                        f"(no scheme, path or credentials), got {registry!r}")
    elif strategy not in defaults.STRATEGIES or not strategy_info(strategy).pushes_to_registry:
        pushing = " or ".join(repr(s.name) for s in STRATEGIES if s.pushes_to_registry)
        r.problem(f"{prefix}.registry", f"only strategy {pushing} pushes images to a registry; "
                                        f"remove it or set strategy = {pushing} (got strategy {strategy!r})")
    return registry


def _read_app(r: _Reader, name: str, t: dict[str, Any], hosts: Mapping[str, HostConfig]) -> AppConfig | None:
    prefix = f"apps.{name}"
    before = len(r.problems)
    if not _NAME.fullmatch(name):
        r.problem(prefix, "app names use letters, digits, '.', '_' and '-' and start with a letter or digit")
    r.unknown_keys(t, prefix, _APP_KEYS)
    host_name = r.get(t, prefix, "host", str, "")
    host = hosts.get(host_name)
    if host is None:
        known = ", ".join(sorted(hosts)) or "none defined"
        r.problem(f"{prefix}.host", f"no [hosts.{host_name}] table (known hosts: {known})")
    # A plain git server's hook sends the name the config gives (by default the app's): any name will do.
    plain = host is not None and host.kind == defaults.PLAIN_GIT_KIND
    repo = r.get(t, prefix, "repo", str, name if plain else "")
    if plain and not repo.strip():
        r.problem(f"{prefix}.repo", "expected a name for the repository (the app's name when left out)")
    elif not plain and (repo.count("/") < 1 or repo.startswith("/") or repo.endswith("/")):
        r.problem(f"{prefix}.repo", f"expected 'owner/name' as the push payload names it, got {repo!r}")
    clone_url = r.get(t, prefix, "clone_url", str, "")
    if not clone_url:
        r.problem(f"{prefix}.clone_url", "required: the URL the worker fetches from")
    elif (credentials := clone_url_credentials(clone_url)) is not None:
        # The URL itself is not quoted: it holds the credential.
        r.problem(
            f"{prefix}.clone_url",
            f"the URL holds {credentials}, which would show in `ps` and in logs: remove it and give the "
            "credential with token_env or token_file (HTTPS) or ssh_key_file (SSH)",
        )
    branch = r.get(t, prefix, "branch", str, None)
    tags = r.get(t, prefix, "tags", str, None)
    if branch is not None and tags is not None:
        r.problem(f"{prefix}.tags", "give either branch or tags, not both")
    if branch is None and tags is None:
        branch = "main"
    compose_files = r.get(t, prefix, "compose_files", list, ["docker-compose.yml"])
    for i, f in enumerate(compose_files):
        if not isinstance(f, str) or not _relative_inside(f):
            r.problem(f"{prefix}.compose_files[{i}]", f"expected a path inside the repository, got {f!r}")
    if not compose_files:
        r.problem(f"{prefix}.compose_files", "expected at least one compose file")
    project = r.get(t, prefix, "project", str, "") or name.lower().replace(".", "-")
    if not _PROJECT.fullmatch(project):
        r.problem(f"{prefix}.project", f"compose project names use a-z, 0-9, '_' and '-', got {project!r}")
    strategy = r.get(t, prefix, "strategy", str, defaults.STRATEGY)
    if strategy not in defaults.STRATEGIES:
        r.problem(f"{prefix}.strategy", f"expected one of {', '.join(defaults.STRATEGIES)}, got {strategy!r}")
    paths = r.get(t, prefix, "paths", list, [])
    for i, p in enumerate(paths):
        if not isinstance(p, str) or not p:
            r.problem(f"{prefix}.paths[{i}]", f"expected a glob such as 'services/shop/**', got {p!r}")
    poll = r.duration(t, prefix, "poll_interval", 0.0) if "poll_interval" in t else None
    if poll is not None and (tags is not None or is_glob(branch or "")):
        r.problem(f"{prefix}.poll_interval", "polling needs one exact branch (not a glob, not tags)")
    registry = _read_registry(r, t, prefix, strategy)
    ssh_key = r.get(t, prefix, "ssh_key_file", str, None)
    if ssh_key is not None and not Path(ssh_key).is_file():
        r.problem(f"{prefix}.ssh_key_file", f"no such file: {ssh_key}")
    notify_url = r.get(t, prefix, "notify_url", str, None)
    if notify_url is not None and not notify_url.startswith(("http://", "https://")):
        r.problem(f"{prefix}.notify_url", f"expected an http(s) URL, got {notify_url!r}")
    notify = NotifyConfig(
        webhook_url=notify_url,
        webhook_secret=r.secret(t, prefix, "notify_secret", required=notify_url is not None),
        slack_url=r.secret(t, prefix, "slack_url", required=False),
    )
    environment = r.get(t, prefix, "environment", str, name)
    if environment and not _ENVIRONMENT.fullmatch(environment):
        r.problem(f"{prefix}.environment", "an environment name has at most 255 letters, digits, spaces and "
                  f"'-_./${{}}', and does not start or end with '/' (\"\" records none), got {environment!r}")
    environment_url = r.get(t, prefix, "environment_url", str, None)
    if environment_url is not None and not _HTTP_URL.fullmatch(environment_url):
        r.problem(f"{prefix}.environment_url", f"expected an http(s) URL, got {environment_url!r}")
    secret = r.secret(t, prefix, "secret", required=True)
    clone_token = r.secret(t, prefix, "token", required=False)
    health_timeout = r.duration(t, prefix, "health_timeout", defaults.HEALTH_TIMEOUT_SECONDS)
    start_grace = r.duration(t, prefix, "start_grace", defaults.START_GRACE_SECONDS)
    steps = {phase: _read_steps(r, t, prefix, phase) for phase in PHASES}
    require_checks = _read_require_checks(r, t, prefix)
    checks_timeout = r.duration(t, prefix, "checks_timeout", defaults.CHECKS_TIMEOUT_SECONDS)
    if require_checks is not None and host is not None and not HOST_KINDS[host.kind].checks:
        r.problem(f"{prefix}.require_checks", f"hosts of kind {host.kind!r} report no CI checks hooksvc can read")
    status_context = r.get(t, prefix, "status_context", str, "") or f"hooksvc/{name}"
    if require_checks is not None and status_context in require_checks.names:
        r.problem(f"{prefix}.require_checks", f"{status_context!r} is hooksvc's own status_context, which never "
                  "counts as a check: remove it")
    if "checks_timeout" in t and require_checks is None:
        r.problem(f"{prefix}.checks_timeout", "only applies with require_checks: set it, or remove checks_timeout")
    freeze, timezone = _read_freeze(r, t, prefix)
    previews = _read_previews(r, t, prefix)
    if previews is not None and strategy in defaults.STRATEGIES and not strategy_info(strategy).previews:
        runs = " or ".join(repr(s.name) for s in STRATEGIES if s.previews)
        r.problem(f"{prefix}.previews", f"strategy {strategy!r} runs no previews (each is a compose project): use "
                                        f"strategy {runs}, or remove the previews table")
    if previews is not None and host is not None and not HOST_KINDS[host.kind].pull_head_ref:
        r.problem(f"{prefix}.previews", f"hosts of kind {host.kind!r} send no pull-request events hooksvc reads "
                                        "(previews work with github, gitea, forgejo and gitlab)")
    if len(r.problems) > before or host is None or secret is None:
        return None
    return AppConfig(
        name=name,
        host=host_name,
        host_kind=host.kind,
        repo=repo,
        clone_url=clone_url,
        secret=secret,
        branch=branch,
        tags=tags,
        compose_files=tuple(compose_files),
        project=project,
        strategy=strategy,
        health_timeout=health_timeout,
        start_grace=start_grace,
        status_context=status_context,
        docker_host=r.get(t, prefix, "docker_host", str, None),
        registry=registry,
        paths=tuple(paths),
        poll_interval=poll,
        ssh_key_file=Path(ssh_key) if ssh_key else None,
        clone_token=clone_token,
        notify=notify,
        environment=environment,
        environment_url=environment_url,
        pre_deploy=steps["pre_deploy"],
        post_deploy=steps["post_deploy"],
        require_checks=require_checks,
        checks_timeout=checks_timeout,
        freeze=freeze,
        timezone=timezone,
        previews=previews,
    )


def _read_previews(r: _Reader, t: Mapping[str, Any], prefix: str) -> PreviewsConfig | None:
    """`[apps.NAME.previews]` (SPEC §13), each problem naming its key; None when the app has none."""
    if "previews" not in t:
        return None
    key = f"{prefix}.previews"
    p = r.table(t, key)
    r.unknown_keys(p, key, _PREVIEW_KEYS)
    before = len(r.problems)
    url = r.get(p, key, "url", str, "")
    if not url:
        r.problem(f"{key}.url", 'required: where a preview is reached, e.g. "https://pr-{number}.shop.example.com"')
    elif not _HTTP_URL.fullmatch(url):
        r.problem(f"{key}.url", f"expected an http(s) URL template, got {url!r}")
    elif (wrong := check_template(url, URL_FIELDS if "ports" in p else URL_FIELDS - {"port"})) is not None:
        r.problem(f"{key}.url", wrong + ("" if "ports" in p else " ({port} needs ports)"))
    ports = None
    if "ports" in p:
        try:
            ports = parse_port_range(p["ports"])
        except ValueError as exc:
            r.problem(f"{key}.ports", str(exc))
    labels = _read_preview_labels(r, p, key)
    if ("ports" in p) == ("labels" in p):
        r.problem(key, 'give exactly one of ports (host ports, e.g. "9100-9199") or labels (templates for a proxy, '
                       'e.g. { "traefik.http.routers.pr{number}.rule" = "Host(`pr-{number}.example.com`)" })')
    service = r.get(p, key, "service", str, None)
    if service is not None and not service:
        r.problem(f"{key}.service", "expected a service name of the app's compose files (leave it out for the first "
                                    "service with a healthcheck)")
    most = r.get(p, key, "max", int, defaults.PREVIEWS_MAX)
    if most < 1:
        r.problem(f"{key}.max", f"expected at least 1 live preview, got {most!r}")
    on_max = r.get(p, key, "on_max", str, ON_MAX_CHOICES[0])
    if on_max not in ON_MAX_CHOICES:
        r.problem(f"{key}.on_max", f"expected one of {', '.join(repr(c) for c in ON_MAX_CHOICES)}, got {on_max!r}")
    services = r.get(p, key, "services", list, [])
    for i, s in enumerate(services):
        if not isinstance(s, str) or not s:
            r.problem(f"{key}.services[{i}]", f"expected a service name, got {s!r}")
    if service is not None and services and service not in services:
        r.problem(f"{key}.service", f"{service!r} is not one of services {services!r}: the preview would not run it")
    environment = r.get(p, key, "environment", dict, {})
    for name, value in environment.items():
        if not _ENV_NAME.fullmatch(name):
            r.problem(f"{key}.environment.{name}", "expected a variable name (letters, digits, '_')")
        elif not isinstance(value, str):
            r.problem(f"{key}.environment.{name}", f"expected a string, got {value!r}")
        elif (wrong := check_template(value, ENVIRONMENT_FIELDS)) is not None:
            r.problem(f"{key}.environment.{name}", wrong)
    enabled = r.get(p, key, "enabled", bool, True)
    allow_forks = r.get(p, key, "allow_forks", bool, False)
    ttl = r.duration(p, key, "ttl", defaults.PREVIEW_TTL_SECONDS)
    if len(r.problems) > before:
        return None
    return PreviewsConfig(url=url, enabled=enabled, service=service, ports=ports, labels=labels, max=most,
                          on_max=on_max, ttl=ttl, services=tuple(services), environment=dict(environment),
                          allow_forks=allow_forks)


def _read_preview_labels(r: _Reader, p: Mapping[str, Any], key: str) -> dict[str, str] | None:
    if "labels" not in p:
        return None
    labels = r.get(p, key, "labels", dict, {})
    if not labels:
        r.problem(f"{key}.labels", "expected a table of label templates, e.g. "
                                   '{ "traefik.http.routers.pr{number}.rule" = "Host(`pr-{number}.example.com`)" }')
    for name, value in labels.items():
        at = f"{key}.labels.{name}"
        if not isinstance(value, str):
            r.problem(at, f"expected a string, got {value!r}")
        elif (wrong := check_template(name, LABEL_FIELDS) or check_template(value, LABEL_FIELDS)) is not None:
            r.problem(at, wrong)
    return dict(labels)


def _read_require_checks(r: _Reader, t: Mapping[str, Any], prefix: str) -> CheckRequirement | None:
    """`require_checks`: "all", or a non-empty list of check names and status contexts."""
    value = t.get("require_checks")
    key = f"{prefix}.require_checks"
    if value is None:
        return None
    if value == ALL:
        return CheckRequirement(every=True)
    if isinstance(value, str):
        r.problem(key, f'expected "all" or a list of check names such as ["ci/test", "lint"], got {value!r}')
        return None
    if not isinstance(value, list) or not value:
        r.problem(key, f'expected "all" or a non-empty list of check names, got {value!r}')
        return None
    names: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            r.problem(f"{key}[{i}]", f"expected a check name or status context, got {name!r}")
        elif name in names:
            r.problem(f"{key}[{i}]", f"{name!r} is listed twice")
        else:
            names.append(name)
    return CheckRequirement(names=tuple(names)) if len(names) == len(value) else None


def _read_freeze(r: _Reader, t: Mapping[str, Any], prefix: str) -> tuple[tuple[FreezeWindow, ...], str]:
    """The app's freeze windows and the zone they are read in, each problem naming its key."""
    timezone = r.get(t, prefix, "timezone", str, defaults.TIMEZONE)
    try:
        zone(timezone)
    except ValueError as exc:
        r.problem(f"{prefix}.timezone", str(exc))
    windows: list[FreezeWindow] = []
    for i, text in enumerate(r.get(t, prefix, "freeze", list, [])):
        if not isinstance(text, str):
            r.problem(f"{prefix}.freeze[{i}]", f"expected a string such as 'Fri 16:00 - Mon 08:00', got {text!r}")
            continue
        try:
            windows.append(parse_window(text))
        except ValueError as exc:
            r.problem(f"{prefix}.freeze[{i}]", str(exc))
    return tuple(windows), timezone


def _read_steps(r: _Reader, t: Mapping[str, Any], prefix: str, phase: str) -> tuple[ReleaseStep, ...]:
    if phase not in t:
        return ()
    steps, problems = read_release_steps(t[phase], f"{prefix}.{phase}")
    for key, message in problems:
        r.problem(key, message)
    return steps


def parse_config(text: str, path: str, env: Mapping[str, str]) -> Config:
    """Validate TOML text; raise ConfigError listing every problem."""
    problems: list[str] = []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    r = _Reader(path, problems, env)
    r.unknown_keys(data, "", {"server", "redis", "worker", "hosts", "apps", "operators"})
    server = _read_server(r, data)
    redis = _read_redis(r, data)
    worker = _read_worker(r, data)
    hosts = _read_hosts(r, data, server.public_url)
    apps: dict[str, AppConfig] = {}
    projects: dict[tuple[str | None, str], str] = {}
    for name, _, t in r.named_tables(data, "apps"):
        app = _read_app(r, name, t, hosts)
        if app is None:
            continue
        other = projects.setdefault((app.docker_host, app.project), name)
        if other != name:
            r.problem(f"apps.{name}.project", f"compose project {app.project!r} is already used by app {other!r}")
        apps[name] = app
    operators = _read_operators(r, data, server)
    if problems:
        raise ConfigError(problems)
    return Config(path=path, server=server, redis=redis, worker=worker, hosts=hosts, apps=apps, operators=operators)


_OPERATOR_KEYS = {"token_env", "token_file", "role"}
_OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def _read_operators(r: _Reader, data: Mapping[str, Any], server: ServerConfig) -> dict[str, OperatorConfig]:
    operators: dict[str, OperatorConfig] = {}
    reserved = {api_token_name(n) for n in range(1, len(server.api_tokens) + 1)}
    tokens: dict[str, str] = {t.reveal(): "server.api_tokens" for t in server.api_tokens}
    for name, prefix, t in r.named_tables(data, "operators"):
        r.unknown_keys(t, prefix, _OPERATOR_KEYS)
        if not _OPERATOR_NAME.fullmatch(name):
            r.problem(prefix, "an operator name is 1-64 letters, digits and . _ @ - (starting with a letter or digit)")
        elif name in reserved:
            r.problem(prefix, f"{name!r} is the name of a server.api_tokens token: choose another name")
        try:
            role = parse_role(t.get("role"))
        except ValueError as exc:
            r.problem(f"{prefix}.role", f"required: {exc}" if "role" not in t else str(exc))
            role = Role.VIEWER
        token = r.secret(t, prefix, "token", required=True)
        if token is None:
            continue
        if len(token.reveal()) < defaults.MIN_SECRET_CHARACTERS:
            r.problem(f"{prefix}.token_env" if "token_env" in t else f"{prefix}.token_file",
                      f"the token has {len(token.reveal())} characters: a bearer token needs at least "
                      f"{defaults.MIN_SECRET_CHARACTERS} (make one with `openssl rand -hex 16`)")
        other = tokens.setdefault(token.reveal(), prefix)
        if other != prefix:
            # The token alone says who is asking: two holders of one token could not be told apart.
            r.problem(prefix, f"its token is also {other}'s: every operator needs a token of their own")
        operators[name] = OperatorConfig(name=name, role=role, token=token)
    return operators


def resolve_config_path(path: str | None, env: Mapping[str, str]) -> str:
    chosen = path or env.get(defaults.CONFIG_ENV)
    if not chosen:
        raise ConfigError([f"no configuration: pass --config PATH or set ${defaults.CONFIG_ENV}"])
    return chosen


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config file at `path` (or `$HOOKSVC_CONFIG`)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    chosen = resolve_config_path(path, environ)
    try:
        text = Path(chosen).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{chosen}: cannot read the configuration: {exc.strerror}"]) from None
    return parse_config(text, chosen, environ)
