"""Credentials for a git host's API and HTTPS clones: a personal token, or a GitHub App's installation token.

`authorization(host, repo)` is the one question every caller asks ("what do I send to host H about
repository R?"): commit statuses, deployments, check runs, reading checks, and HTTPS clones.

A host with a token (`[hosts.*] token_env`/`token_file`) gets it back unchanged. A host with GitHub
App credentials (`app_id`, `private_key_file`, optionally `installation_id`):

1. a JWT (RS256, signed with the App's private key by PyJWT; `iss` the App id, `iat` 60 s in the
   past against clock drift, `exp` 9 minutes ahead, inside GitHub's 10) authenticates as the App;
2. the installation that covers the repository is `installation_id`, or asked of GitHub once per
   repository (`GET /repos/{owner}/{repo}/installation`) and remembered;
3. `POST /app/installations/{id}/access_tokens` trades the JWT for an installation token (valid one
   hour), cached per installation until `INSTALLATION_TOKEN_RENEW_SECONDS` before it expires.

Installation tokens live in this process's memory only, never in Redis: a token at rest in Redis
would be readable by every process that reaches Redis (the web side included) and by its
backups, for an hour, while a fresh one costs one request per worker process and hour. A job runs
in a fork of its worker and inherits the worker's cache as it was at the fork.

Renewal has no gap: a token is replaced while it is still valid for minutes, and callers that
need one while another thread renews wait for that renewal (one lock per installation) instead of
each minting their own. A caller whose request was refused with 401 calls `refused(host, repo)`:
the cached token is dropped so the next `authorization` renews it (retry once).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import quote

import jwt

from hooksvc import defaults
from hooksvc.config import AppConfig, GitHubAppConfig, HostConfig, Secret
from hooksvc.errors import HooksvcError
from workers import http
from workers.http import HttpRequest, HttpResponse

#: GitHub's REST API version header value (also in workers/statuses/github.py).
API_VERSION = "2022-11-28"
USER_AGENT = "hooksvc"


class HostAuthError(HooksvcError):
    """No credential could be had for a host: the message says what GitHub answered and what to check."""


@dataclass(frozen=True)
class InstallationToken:
    """An installation token and when GitHub lets it lapse (epoch seconds)."""

    token: Secret
    expires_at: float


def app_jwt(app: GitHubAppConfig, now: float) -> str:
    """The JWT that authenticates as the App: RS256, `iss` the App id, `iat` backdated, `exp` < 10 min."""
    issued = int(now) - defaults.GITHUB_APP_JWT_BACKDATE_SECONDS
    claims = {"iat": issued, "exp": int(now) + defaults.GITHUB_APP_JWT_LIFETIME_SECONDS, "iss": str(app.app_id)}
    return jwt.encode(claims, app.private_key.reveal(), algorithm="RS256")


def _headers(bearer: str, *, json_body: bool = False) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/vnd.github+json",
               "User-Agent": USER_AGENT, "X-GitHub-Api-Version": API_VERSION}
    if json_body:
        headers["Content-Type"] = "application/json"
    return headers


def installation_lookup_request(host: HostConfig, app_jwt_value: str, repo: str) -> HttpRequest:
    """`GET /repos/{owner}/{repo}/installation`: which installation of the App covers `repo`."""
    owner, name = repo.split("/", 1)
    url = f"{host.api_url.rstrip('/')}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/installation"
    return HttpRequest(method="GET", url=url, headers=_headers(app_jwt_value))


def access_token_request(host: HostConfig, app_jwt_value: str, installation_id: int) -> HttpRequest:
    """`POST /app/installations/{id}/access_tokens`: a new installation token."""
    url = f"{host.api_url.rstrip('/')}/app/installations/{installation_id}/access_tokens"
    return HttpRequest(method="POST", url=url, headers=_headers(app_jwt_value, json_body=True), json={})


def _json_object(answer: HttpResponse, what: str) -> dict[str, object]:
    try:
        body = json.loads(answer.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise HostAuthError(f"{what}: GitHub's answer (HTTP {answer.status}) is not a JSON object")
    return body


def parse_installation_id(answer: HttpResponse, repo: str) -> int:
    """The installation id in a lookup's answer; HostAuthError saying what to do when there is none."""
    if answer.status == 404:
        raise HostAuthError(f"the GitHub App is not installed on {repo}: install it on that repository "
                            "(the App's page, \"Install App\"), or set the host's installation_id")
    if not answer.ok:
        raise HostAuthError(f"cannot find the GitHub App's installation for {repo}: HTTP {answer.status}: "
                            f"{answer.text(200)} (check app_id and that private_key_file is this App's key)")
    value = _json_object(answer, f"the installation of {repo}").get("id")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise HostAuthError(f"GitHub's answer about the installation of {repo} holds no id (id: {value!r})")
    return value


def parse_access_token(answer: HttpResponse, installation_id: int) -> InstallationToken:
    """The token and its expiry in an access-token answer; HostAuthError when GitHub refused."""
    if not answer.ok:
        raise HostAuthError(f"GitHub refused an installation token for installation {installation_id}: "
                            f"HTTP {answer.status}: {answer.text(200)} (check app_id, private_key_file, "
                            "installation_id, and that the worker's clock is right)")
    body = _json_object(answer, f"the token of installation {installation_id}")
    token, expires = body.get("token"), body.get("expires_at")
    if not isinstance(token, str) or not token or not isinstance(expires, str):
        raise HostAuthError(f"GitHub's answer for installation {installation_id} holds no token and expires_at")
    try:
        expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HostAuthError(f"GitHub's expires_at for installation {installation_id} is no time: {expires!r}") from None
    return InstallationToken(Secret(token), expires_at)


Send = Callable[[HttpRequest], HttpResponse]


class HostCredentials:
    """The installation tokens of this process, per (API URL, App id, installation id), and which
    installation covers each repository. Thread-safe; `send` and `clock` are for tests."""

    def __init__(self, send: Send | None = None, clock: Callable[[], float] = time.time) -> None:
        self._send: Send = send or (lambda request: http.send(request))
        self._clock = clock
        self._guard = threading.Lock()
        self._renewing: dict[tuple[str, int, int], threading.Lock] = {}
        self._tokens: dict[tuple[str, int, int], InstallationToken] = {}
        self._installations: dict[tuple[str, int, str], int] = {}

    def reset_after_fork(self) -> None:
        """A fork copies a lock another thread held at that moment, held forever: start the locks anew."""
        self._guard = threading.Lock()
        self._renewing = {}

    def token(self, host: HostConfig, repo: str) -> Secret | None:
        """The secret to present for `repo` on `host`: its personal token, a live installation token,
        or None when the host has no credentials. HostAuthError when GitHub gives none."""
        if host.app is None:
            return host.token
        return self._installation_token(host, host.app, repo).token

    def authorization(self, host: HostConfig, repo: str) -> str | None:
        """The `Authorization` header value (`Bearer ...`) for requests to `host` about `repo`."""
        secret = self.token(host, repo)
        return f"Bearer {secret.reveal()}" if secret is not None else None

    def refused(self, host: HostConfig, repo: str) -> None:
        """The host answered 401 to the credential `authorization` gave: forget a cached installation
        token so the next call renews it. A personal token is not renewable: nothing changes."""
        if host.app is None:
            return
        with self._guard:
            installation = host.app.installation_id or self._installations.get(self._repo_key(host, host.app, repo))
            if installation is not None:
                self._tokens.pop(self._token_key(host, host.app, installation), None)

    def _repo_key(self, host: HostConfig, app: GitHubAppConfig, repo: str) -> tuple[str, int, str]:
        return host.api_url.rstrip("/"), app.app_id, repo.lower()

    def _token_key(self, host: HostConfig, app: GitHubAppConfig, installation: int) -> tuple[str, int, int]:
        return host.api_url.rstrip("/"), app.app_id, installation

    def _installation_id(self, host: HostConfig, app: GitHubAppConfig, repo: str) -> int:
        if app.installation_id is not None:
            return app.installation_id
        key = self._repo_key(host, app, repo)
        with self._guard:
            known = self._installations.get(key)
        if known is not None:
            return known
        answer = self._request(installation_lookup_request(host, app_jwt(app, self._clock()), repo))
        found = parse_installation_id(answer, repo)
        with self._guard:
            self._installations[key] = found
        return found

    def _installation_token(self, host: HostConfig, app: GitHubAppConfig, repo: str) -> InstallationToken:
        installation = self._installation_id(host, app, repo)
        key = self._token_key(host, app, installation)
        with self._guard:
            cached = self._tokens.get(key)
            if cached is not None and self._fresh(cached):
                return cached
            renewing = self._renewing.setdefault(key, threading.Lock())
        # One renewal per installation at a time; who waited finds the new token on the second look.
        with renewing:
            with self._guard:
                cached = self._tokens.get(key)
                if cached is not None and self._fresh(cached):
                    return cached
            answer = self._request(access_token_request(host, app_jwt(app, self._clock()), installation))
            fresh = parse_access_token(answer, installation)
            with self._guard:
                self._tokens[key] = fresh
            return fresh

    def _fresh(self, token: InstallationToken) -> bool:
        return self._clock() < token.expires_at - defaults.INSTALLATION_TOKEN_RENEW_SECONDS

    def _request(self, request: HttpRequest) -> HttpResponse:
        try:
            return self._send(request)
        except http.HttpTransportError as exc:
            raise HostAuthError(f"cannot reach GitHub for an installation token: {exc}") from None


#: The process's credentials: the outbox sender's thread and the jobs (forks) share one cache.
CREDENTIALS = HostCredentials()
os.register_at_fork(after_in_child=CREDENTIALS.reset_after_fork)


def authorization(host: HostConfig, repo: str) -> str | None:
    """The `Authorization` header value for `host`'s API about `repo` (`owner/name`): `Bearer <token>`
    with the host's personal token or a live installation token of its GitHub App; None when the host
    has no credentials. Raises HostAuthError when GitHub hands out no installation token."""
    return CREDENTIALS.authorization(host, repo)


def refused(host: HostConfig, repo: str) -> None:
    """Tell the cache that `host` answered 401 for `repo`: the next `authorization` renews the token."""
    CREDENTIALS.refused(host, repo)


def with_token(host: HostConfig, repo: str) -> HostConfig:
    """`host` with `token` set to what `authorization` presents, for the request builders that read
    `host.token` (statuses, deployments): an App host gets its installation token for `repo`."""
    if host.app is None:
        return host
    return replace(host, token=CREDENTIALS.token(host, repo))


def with_clone_token(app: AppConfig, host: HostConfig | None) -> AppConfig:
    """`app` with the installation token as its HTTPS clone credential when its host is a GitHub App
    and the app names no token of its own (git sends it as `x-access-token`, the host kind's clone user,
    through the environment: see workers/git.py)."""
    if host is None or host.app is None or app.clone_token is not None:
        return app
    if not app.clone_url.startswith(("https://", "http://")):
        return app  # SSH and local origins take no token
    return replace(app, clone_token=CREDENTIALS.token(host, app.repo))
