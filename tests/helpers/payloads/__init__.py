"""Example webhook payloads and requests signed the way each git host signs them.

The JSON files here are trimmed copies of the hosts' documented examples (GitHub: octokit/webhooks
payload-examples; Gitea: docs/content/usage/webhooks; GitLab: webhook_events.md; Bitbucket Cloud:
the `repo:push` example of support.atlassian.com/bitbucket-cloud/docs/event-payloads, as copied in
go-playground/webhooks testdata/bitbucket/repo-push.json; Bitbucket Data Center: the
`repo:refs_changed` example of confluence.atlassian.com/bitbucketserver "Event payload"; Gogs: the
push example of gogs/gogs docs/advancing/webhooks.mdx). The CI events: GitHub's `check_run`
(completed), `check_suite` (completed) and `status` examples of octokit/webhooks payload-examples,
trimmed of the URL fields of users and apps; Gitea's and Forgejo's `status` event, whose documented
shape is `CommitStatusPayload` in Gitea's modules/structs/hook.go (commit, context, created_at,
description, id, repository, sender, sha, state, target_url, updated_at); GitLab's pipeline event
example of webhook_events.md ("Pipeline events"), trimmed of its jobs' runner details. The pull-request
events (previews): GitHub's `pull_request` synchronize example of octokit/webhooks payload-examples, trimmed
of its URL fields; Gitea's `pull_request` payload in the shape of `PullRequestPayload` and `PullRequest`
(modules/structs/hook.go, pull.go: top-level number, head/base with ref, sha, repo_id, repo), its values
those of Gitea's own webhook test payload (test/repo, PR 12, "Fix bug"); GitLab's merge request event
example of webhook_events.md ("Merge request events"). The builders sign
independently of `hooksvc.providers`, so a test of a verifier checks it against the host's scheme,
not against itself.

Typical use::

    hook = github_request(github_push(), "shop-webhook-secret")
    provider.verify(hook.to_request(), secret)              # pure unit tests
    client.open("/hooks/github", **hook.client_kwargs())    # Flask test client
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from hooksvc.providers import ZERO_SHA, RefChange, WebhookDelivery, WebhookRequest

PAYLOAD_DIR = Path(__file__).parent

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

#: A payload as a dict (serialised here), or the exact JSON text to send.
Payload = Mapping[str, Any] | bytes | str


def load(name: str) -> dict[str, Any]:
    """A fresh copy of the example payload `<name>.json`, free to modify."""
    data: dict[str, Any] = json.loads(load_bytes(name))
    return data


def load_bytes(name: str) -> bytes:
    """The example payload `<name>.json` byte for byte."""
    return (PAYLOAD_DIR / f"{name}.json").read_bytes()


def commit_sha(n: int) -> str:
    """A distinct, realistic-looking 40-hex sha for each `n`."""
    return hashlib.sha1(f"commit {n}".encode()).hexdigest()  # noqa: S324 - a fake object id, not security


def single_change(delivery: WebhookDelivery) -> RefChange:
    """The one ref change of a push delivery (every host but Bitbucket sends one per push)."""
    assert delivery.push is not None, f"{delivery.event!r} delivery carries no push"
    assert len(delivery.push.changes) == 1, f"expected one ref change, got {delivery.push.changes!r}"
    return delivery.push.changes[0]


def payload_text(payload: Payload) -> bytes:
    """The JSON text a host would send: compact, UTF-8, non-ASCII left as is (as GitHub does)."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def github_signature(body: bytes, secret: str) -> str:
    """`X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def gitea_signature(payload: bytes, secret: str) -> str:
    """`X-Gitea-Signature`: bare hex HMAC-SHA256 of the JSON payload text."""
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class HookRequest:
    """One webhook delivery as the host sends it."""

    #: Header names as the host spells them; Content-Type included when there is a body.
    headers: dict[str, str]
    body: bytes
    content_type: str
    query: dict[str, str] = field(default_factory=dict)
    method: str = "POST"

    def to_request(self) -> WebhookRequest:
        """The provider-level request, with lower-case header names as the web layer builds it."""
        return WebhookRequest(
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.body,
            query=dict(self.query),
            method=self.method,
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Flask's test client: `client.open(url, **hook.client_kwargs())`."""
        return {"method": self.method, "data": self.body, "headers": dict(self.headers),
                "query_string": dict(self.query)}

    def with_header(self, name: str, value: str | None) -> HookRequest:
        """A copy with header `name` set (or removed when `value` is None), matched case-insensitively."""
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
        return replace(self, headers=headers)

    def with_body(self, body: bytes) -> HookRequest:
        """A copy with another body and the original headers: a tampered delivery."""
        return replace(self, body=body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def _new_id() -> str:
    return str(uuid.uuid4())


def github_request(
    payload: Payload,
    secret: str | None,
    event: str = "push",
    *,
    form: bool = False,
    delivery_id: str | None = None,
) -> HookRequest:
    """A GitHub delivery: JSON body, or `payload=<json>` form body when `form`; unsigned if no secret."""
    text = payload_text(payload)
    if form:
        body, content_type = urlencode({"payload": text.decode("utf-8")}).encode("ascii"), FORM
    else:
        body, content_type = text, JSON
    headers = {
        "User-Agent": "GitHub-Hookshot/044aadd",
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or _new_id(),
        "X-GitHub-Hook-ID": "292430182",
    }
    if secret is not None:
        legacy = hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature"] = f"sha1={legacy}"
        headers["X-Hub-Signature-256"] = github_signature(body, secret)
    return HookRequest(headers=headers, body=body, content_type=content_type)


def gitea_request(
    payload: Payload,
    secret: str | None,
    event: str = "push",
    *,
    form: bool = False,
    get: bool = False,
    forgejo: bool = False,
    delivery_id: str | None = None,
) -> HookRequest:
    """A Gitea (or, with `forgejo`, Forgejo) delivery with every header the host sends.

    JSON body by default; `form` sends `payload=<json>`; `get` sends `GET ?payload=<json>`. The
    signatures are over the JSON text in every case. Without a secret the signature headers are
    present but empty, as Gitea sends them.
    """
    text = payload_text(payload)
    query: dict[str, str] = {}
    method = "POST"
    if get:
        body, content_type, method = b"", "", "GET"
        query = {"payload": text.decode("utf-8")}
    elif form:
        body, content_type = urlencode({"payload": text.decode("utf-8")}).encode("ascii"), FORM
    else:
        body, content_type = text, JSON
    sig256 = gitea_signature(text, secret) if secret is not None else ""
    sig1 = hmac.new(secret.encode("utf-8"), text, hashlib.sha1).hexdigest() if secret is not None else ""
    delivery = delivery_id or _new_id()
    headers = {"User-Agent": "Go-http-client/1.1"}
    if content_type:
        headers["Content-Type"] = content_type
    families = ["Gitea", "Gogs"] + (["Forgejo"] if forgejo else [])
    for family in families:
        headers[f"X-{family}-Delivery"] = delivery
        headers[f"X-{family}-Event"] = event
        headers[f"X-{family}-Event-Type"] = event
        headers[f"X-{family}-Signature"] = sig256
    headers.update({
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-GitHub-Event-Type": event,
        "X-Hub-Signature": f"sha1={sig1}",
        "X-Hub-Signature-256": f"sha256={sig256}",
    })
    return HookRequest(headers=headers, body=body, content_type=content_type, query=query, method=method)


def gitlab_request(
    payload: Payload,
    token: str | None,
    event: str | None = None,
    *,
    delivery_id: str | None = None,
    legacy: bool = False,
) -> HookRequest:
    """A GitLab delivery with the secret in `X-Gitlab-Token` (omitted when `token` is None).

    `event` defaults to the hook type the payload's `object_kind` implies. `delivery_id` is the
    `Idempotency-Key`; `legacy` leaves that header out, as GitLab before 17.4 did.
    """
    text = payload_text(payload)
    if event is None:
        kind = payload.get("object_kind") if isinstance(payload, Mapping) else None
        event = {"tag_push": "Tag Push Hook", "merge_request": "Merge Request Hook"}.get(str(kind), "Push Hook")
    headers = {
        "User-Agent": "GitLab/17.5.0",
        "Content-Type": JSON,
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": _new_id(),
        "X-Gitlab-Webhook-UUID": "5e4d1a5c-3b8e-4f55-9a8b-1c2d3e4f5a6b",
        "X-Gitlab-Instance": "https://gitlab.example.com",
    }
    if not legacy:
        headers["Idempotency-Key"] = delivery_id or _new_id()
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return HookRequest(headers=headers, body=text, content_type=JSON)


# --- Push payloads for the apps of tests/conftest.py `make_config` ---------------------------------


def github_push(
    repo: str = "acme/shop",
    ref: str = "refs/heads/main",
    after: str | None = None,
    before: str | None = None,
    *,
    forced: bool = False,
) -> dict[str, Any]:
    """GitHub's documented push example moved to `repo`/`ref`; `after` ZERO_SHA makes a deletion."""
    after = after or commit_sha(1)
    before = before or commit_sha(0)
    data = load("github_push_new_branch")
    owner, _, name = repo.partition("/")
    data["repository"].update(full_name=repo, name=name)
    data["repository"]["owner"].update(name=owner, login=owner)
    deleted = after == ZERO_SHA
    data.update(ref=ref, before=before, after=after, created=before == ZERO_SHA, deleted=deleted, forced=forced)
    if deleted:
        data.update(commits=[], head_commit=None)
    else:
        data["commits"][0]["id"] = after
        data["head_commit"]["id"] = after
    return data


def gitea_push(
    repo: str = "acme/blog",
    ref: str = "refs/tags/v1.0.0",
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """Gitea's documented push example moved to `repo`/`ref` (a tag push by default, as blog deploys tags).

    A tag push has `before` zero and no commits, as Gitea sends it; `after` ZERO_SHA deletes the ref.
    """
    after = after or commit_sha(1)
    is_tag = ref.startswith("refs/tags/")
    before = before or (ZERO_SHA if is_tag else commit_sha(0))
    data = load("gitea_push")
    owner, _, name = repo.partition("/")
    data["repository"].update(full_name=repo, name=name)
    data["repository"]["owner"].update(login=owner, username=owner)
    data.update(ref=ref, before=before, after=after)
    if after == ZERO_SHA:
        data.update(commits=[], total_commits=0, head_commit=None)
    else:
        data["head_commit"]["id"] = after
        if is_tag:
            data.update(commits=[], total_commits=0)
        else:
            data["commits"][0]["id"] = after
    return data


def gitlab_push(
    repo: str = "acme/wiki",
    ref: str = "refs/heads/release/1.0",
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """GitLab's documented push (or, for a tag ref, tag push) example moved to `repo`/`ref`.

    `after` ZERO_SHA deletes the ref (and nulls `checkout_sha`, as GitLab does).
    """
    after = after or commit_sha(1)
    is_tag = ref.startswith("refs/tags/")
    data = load("gitlab_tag_push" if is_tag else "gitlab_push")
    before = before or (ZERO_SHA if is_tag else commit_sha(0))
    data["project"]["path_with_namespace"] = repo
    deleted = after == ZERO_SHA
    data.update(ref=ref, before=before, after=after, checkout_sha=None if deleted else after)
    if deleted:
        data.update(commits=[], total_commits_count=0)
    elif data["commits"]:
        data["commits"][-1]["id"] = after
    return data


def bitbucket_request(
    payload: Payload, secret: str | None, event: str = "repo:push", *, delivery_id: str | None = None,
    data_center: bool = False,
) -> HookRequest:
    """A Bitbucket Cloud (or, with `data_center`, Data Center) delivery: JSON, `X-Event-Key`, the
    request id (Cloud `X-Request-UUID`, Data Center `X-Request-Id`), and with a secret
    `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` (no header without one, as Bitbucket sends it)."""
    text = payload_text(payload)
    headers = {"Content-Type": JSON, "X-Event-Key": event}
    if data_center:
        headers |= {"User-Agent": "Atlassian HttpClient 4.0.0 / Bitbucket-8.19.1",
                    "X-Request-Id": delivery_id or _new_id()}
    else:
        headers |= {"User-Agent": "Bitbucket-Webhooks/2.0", "X-Request-UUID": delivery_id or _new_id(),
                    "X-Hook-UUID": "{1f5b0c3a-8d3e-4c4e-9d55-6a8f3b1c2d4e}", "X-Attempt-Number": "1"}
    if secret is not None:
        headers["X-Hub-Signature"] = github_signature(text, secret)
    return HookRequest(headers=headers, body=text, content_type=JSON)


def bitbucket_server_request(
    payload: Payload, secret: str | None, event: str = "repo:refs_changed", *, delivery_id: str | None = None
) -> HookRequest:
    """A Bitbucket Data Center delivery (see `bitbucket_request`)."""
    return bitbucket_request(payload, secret, event, delivery_id=delivery_id, data_center=True)


def gogs_request(
    payload: Payload, secret: str | None, event: str = "push", *, form: bool = False, delivery_id: str | None = None
) -> HookRequest:
    """A Gogs delivery: JSON body or `payload=<json>` form, `X-Gogs-Signature` (bare hex over the JSON
    text), `X-Gogs-Event`, `X-Gogs-Delivery` and Gogs' copies of GitHub's event headers."""
    text = payload_text(payload)
    if form:
        body, content_type = urlencode({"payload": text.decode("utf-8")}).encode("ascii"), FORM
    else:
        body, content_type = text, JSON
    delivery = delivery_id or _new_id()
    headers = {
        "User-Agent": "Go-http-client/1.1",
        "Content-Type": content_type,
        "X-Github-Delivery": delivery,
        "X-Github-Event": event,
        "X-Gogs-Delivery": delivery,
        "X-Gogs-Event": event,
    }
    if secret is not None:
        headers["X-Gogs-Signature"] = gitea_signature(text, secret)
    return HookRequest(headers=headers, body=body, content_type=content_type)


def bitbucket_change(ref: str, after: str | None, before: str | None, *, forced: bool = False) -> dict[str, Any]:
    """One entry of Bitbucket Cloud's `push.changes[]`, shaped like the documented example: `before`
    None is a new ref (`old` null, `created`), `after` None a deleted one (`new` null, `closed`)."""
    kind, _, name = ref.removeprefix("refs/").partition("/")
    template = load("bitbucket_push")["push"]["changes"][0]

    def state(sha: str) -> dict[str, Any]:
        side = dict(template["new"])
        side.update(type={"heads": "branch", "tags": "tag"}[kind], name=name,
                    target={**side["target"], "hash": sha})
        return side

    change = dict(template)
    change.update(new=state(after) if after else None, old=state(before) if before else None,
                  created=before is None, closed=after is None, forced=forced)
    if after:
        change["commits"] = [{**template["commits"][0], "hash": after}]
    else:
        change["commits"] = []
    return change


def bitbucket_push(repo: str = "acme/api", *changes: dict[str, Any]) -> dict[str, Any]:
    """Bitbucket Cloud's documented `repo:push` example moved to `repo` with `changes` (by default one
    push of `main` from commit 0 to commit 1; see `bitbucket_change`)."""
    data = load("bitbucket_push")
    workspace, _, name = repo.partition("/")
    data["repository"].update(full_name=repo, name=name)
    data["push"]["changes"] = list(changes) or [bitbucket_change("refs/heads/main", commit_sha(1), commit_sha(0))]
    return data


def bitbucket_server_push(
    repo: str = "OPS/console", ref: str = "refs/heads/main", after: str | None = None, before: str | None = None,
    *more: dict[str, Any],
) -> dict[str, Any]:
    """Bitbucket Data Center's documented `repo:refs_changed` example moved to `repo` ('PROJECT/slug')
    and `ref`; `before` ZERO_SHA adds the ref, `after` ZERO_SHA deletes it; `more` are further changes."""
    after = after or commit_sha(1)
    before = before or commit_sha(0)
    data = load("bitbucket_server_refs_changed")
    key, _, slug = repo.partition("/")
    data["repository"].update(slug=slug, name=slug)
    data["repository"]["project"]["key"] = key
    kind = "ADD" if before == ZERO_SHA else "DELETE" if after == ZERO_SHA else "UPDATE"
    display = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    change = {"ref": {"id": ref, "displayId": display, "type": "TAG" if ref.startswith("refs/tags/") else "BRANCH"},
              "refId": ref, "fromHash": before, "toHash": after, "type": kind}
    data["changes"] = [change, *more]
    return data


def gogs_push(
    repo: str = "acme/docs", ref: str = "refs/heads/main", after: str | None = None, before: str | None = None,
) -> dict[str, Any]:
    """Gogs' documented push example moved to `repo`/`ref`."""
    after = after or commit_sha(1)
    data = load("gogs_push")
    owner, _, name = repo.partition("/")
    data["repository"].update(full_name=repo, name=name)
    data["repository"]["owner"].update(login=owner, username=owner)
    data.update(ref=ref, before=before or commit_sha(0), after=after)
    data["commits"][0]["id"] = after
    return data


# --- Pull-request payloads (previews) ---------------------------------------------------------------


def _move_repository(repo_object: dict[str, Any], repo: str) -> None:
    owner, _, name = repo.partition("/")
    repo_object.update(full_name=repo, name=name)
    if isinstance(repo_object.get("owner"), dict):
        repo_object["owner"].update(login=owner)


def github_pull_request(
    action: str = "synchronize",
    number: int = 2,
    head_sha: str | None = None,
    *,
    repo: str = "acme/shop",
    fork: str | None = None,
    merged: bool = False,
) -> dict[str, Any]:
    """GitHub's documented `pull_request` (synchronize) example moved to `repo`, PR `number`, `action`;
    `fork` names the repository the head comes from (a fork), `merged` marks a closed PR merged."""
    data = load("github_pull_request_synchronize")
    pull = data["pull_request"]
    data.update(action=action, number=number)
    pull.update(number=number, merged=merged, state="closed" if action == "closed" else "open")
    pull["head"]["sha"] = head_sha or commit_sha(100 + number)
    for holder in (data["repository"], pull["base"]["repo"], pull["head"]["repo"]):
        _move_repository(holder, repo)
    if fork is not None:
        _move_repository(pull["head"]["repo"], fork)
        pull["head"]["repo"]["fork"] = True
    return data


def gitea_pull_request(
    action: str = "opened",
    number: int = 12,
    head_sha: str | None = None,
    *,
    repo: str = "acme/blog",
    fork: str | None = None,
    merged: bool = False,
) -> dict[str, Any]:
    """Gitea's `pull_request` payload (`PullRequestPayload`, modules/structs/hook.go) moved to `repo`, PR
    `number` and `action` (Gitea spells GitHub's synchronize `synchronized`); `fork` as for GitHub."""
    data = load("gitea_pull_request_opened")
    pull = data["pull_request"]
    data.update(action=action, number=number)
    pull.update(number=number, id=number, merged=merged, state="closed" if action == "closed" else "open")
    pull["head"]["sha"] = head_sha or commit_sha(200 + number)
    for holder in (data["repository"], pull["base"]["repo"], pull["head"]["repo"]):
        _move_repository(holder, repo)
    if fork is not None:
        _move_repository(pull["head"]["repo"], fork)
        pull["head"]["repo"].update(id=99, fork=True)
        pull["head"]["repo_id"] = 99
    return data


def gitlab_merge_request(
    action: str = "open",
    iid: int = 1,
    head_sha: str | None = None,
    *,
    repo: str = "acme/wiki",
    fork: bool = False,
    oldrev: str | None = None,
) -> dict[str, Any]:
    """GitLab's documented merge request event moved to `repo`, merge request `iid` and `action`;
    `fork` makes the source project another one; `oldrev` is what an `update` with new commits carries."""
    data = load("gitlab_merge_request")
    attrs = data["object_attributes"]
    data["project"]["path_with_namespace"] = repo
    attrs.update(iid=iid, action=action)
    attrs["last_commit"]["id"] = head_sha or commit_sha(300 + iid)
    if fork:
        attrs["source_project_id"] = attrs["target_project_id"] + 1
    if oldrev is not None:
        attrs["oldrev"] = oldrev
    if action in ("close", "merge"):
        attrs["state"] = "closed" if action == "close" else "merged"
    return data
