"""What every git host provider works with: the request in, the parsed delivery out, and the
`Provider` contract each host's module fulfils (mypy checks every module against it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from hooksvc.ci_checks import CheckEvent

#: The all-zero sha hosts use for "no commit" (`after` of a deleted ref, `before` of a new one).
ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class WebhookRequest:
    """What the HTTP layer hands a provider: headers with lower-case names, the raw body, the query."""

    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str]
    method: str = "POST"

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __repr__(self) -> str:
        # Header values may be secrets (GitLab sends its token verbatim): show only the names.
        return f"WebhookRequest(method={self.method!r}, headers={sorted(self.headers)!r}, body={len(self.body)} bytes)"

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class RefChange:
    """One ref a push moved: a branch or tag pushed, created or deleted."""

    ref: str
    #: The commit the ref pointed to; ZERO_SHA for a new ref, "" when the host does not say.
    before: str
    #: The commit the ref points to now; ZERO_SHA when it was deleted.
    after: str
    deleted: bool
    forced: bool

    @property
    def created(self) -> bool:
        return self.before == ZERO_SHA


@dataclass(frozen=True)
class PushEvent:
    """What one push delivery changed: one ref for most hosts, several for Bitbucket's."""

    changes: tuple[RefChange, ...]


class PreviewAction(StrEnum):
    """What a pull-request event asks of the PR's preview (SPEC §13)."""

    #: Opened, reopened, or new commits pushed: deploy the head.
    DEPLOY = "deploy"
    #: Closed or merged: tear the preview down.
    CLOSE = "close"
    #: Anything else (a label, a title, a review): the preview stays as it is.
    NONE = "none"


@dataclass(frozen=True)
class PullRequestEvent:
    """One pull-request (GitLab: merge-request) delivery, as previews need it."""

    number: int
    action: PreviewAction
    #: The host's own name for what happened (`synchronize`, `update`, `labeled`...), for messages.
    host_action: str
    #: The head commit as the payload names it (the worker fetches the PR's head ref, not a URL).
    head_sha: str
    #: True when the head lives in another repository than the base (a fork).
    fork: bool
    #: The source branch's name, for messages only.
    head_branch: str = ""


@dataclass(frozen=True)
class WebhookDelivery:
    """One parsed webhook delivery."""

    provider: str
    #: Normalised event: "push" (branch or tag), "ping", or the host's own name for anything else.
    event: str
    delivery_id: str
    #: Repository as the payload names it (`owner/name`), "" when the event carries none.
    repo: str
    push: PushEvent | None = None
    #: The check reports of a CI event (GitHub `check_run`/`status`, Gitea `status`, GitLab `pipeline`).
    checks: CheckEvent | None = None
    #: A pull or merge request's event (GitHub/Gitea `pull_request`, GitLab `Merge Request Hook`).
    pull_request: PullRequestEvent | None = None


#: The user name sent with an HTTPS clone token when the clone URL names none: GitLab accepts
#: `oauth2` for personal, project and OAuth tokens; Gitea, Forgejo and Gogs ignore the name when the
#: password is a token.
DEFAULT_CLONE_USER = "oauth2"  # noqa: S105 - a user name, not a password


@dataclass(frozen=True)
class HostKind:
    """What the core knows of one `kind` of `[hosts.*]`, declared by the provider that serves it."""

    name: str
    #: The user name sent with an HTTPS clone token when the clone URL names none.
    clone_user: str = DEFAULT_CLONE_USER
    #: Whether the host has a commit-status API (and so needs `api_url`): a host without one shows
    #: its deployments on hooksvc's own pages only.
    statuses: bool = True
    #: Whether the host refuses a status without a link (Bitbucket): a token for it then needs
    #: `[server] public_url`, the deployment page each status links to.
    status_link: bool = False
    #: Whether the host reports CI checks hooksvc can wait for (`require_checks`): its provider
    #: parses check webhooks, and `workers.ci_status` reads its check API.
    checks: bool = False
    #: Where the host keeps pull request N's head (`{number}` filled in); "" when it sends no
    #: pull-request events hooksvc reads. Previews fetch this ref, never a URL of the payload.
    pull_head_ref: str = ""

    def pull_ref(self, number: int) -> str:
        """The ref of pull request `number`'s head on this kind of host."""
        if not self.pull_head_ref:
            raise ValueError(f"hosts of kind {self.name!r} send no pull-request events")
        return self.pull_head_ref.format(number=number)


class SignedBytes(Protocol):
    def __call__(self, req: WebhookRequest, /) -> bytes:
        """The exact bytes the host signs (BadRequest when they cannot be found).

        What a replay repeats: the web layer computes them once per request and passes them as
        `signed` to `verify` and `parse`, so a request costs one extraction however many secrets
        it is checked against.
        """


class Verify(Protocol):
    def __call__(self, req: WebhookRequest, secret: str, signed: bytes | None = None, /) -> bool:
        """Constant-time check of the request against one secret (`signed`: `signed_bytes(req)`, if known)."""


class Parse(Protocol):
    def __call__(self, req: WebhookRequest, signed: bytes | None = None, /) -> WebhookDelivery:
        """The event, delivery id, repository and push facts (BadRequest when malformed)."""


@dataclass(frozen=True)
class Provider:
    """A git host's webhooks: what one module of `hooksvc.providers` declares as its `PROVIDER`.

    The functions are the module's own, pure; the web layer verifies before it trusts anything parsed.
    """

    #: The webhook route, `/hooks/<route>`.
    route: str
    #: The `kind`s of `[hosts.*]` whose apps this route serves.
    kinds: tuple[HostKind, ...]
    signed_bytes: SignedBytes
    verify: Verify
    parse: Parse
    #: HTTP methods the host delivers with (Gitea can send GET `?payload=`; everyone else POSTs).
    methods: frozenset[str] = frozenset({"POST"})

    @property
    def kind_names(self) -> frozenset[str]:
        return frozenset(kind.name for kind in self.kinds)
