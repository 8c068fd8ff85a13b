"""The pure side of status reporting: request builders per host, state mapping, descriptions,
truncation, notification payloads and signatures, backoff, outbox events."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc import defaults
from hooksvc.config import HostConfig, NotifyConfig, Secret
from hooksvc.deployments import DeploymentState
from hooksvc.outbox import OutboxEvent, is_full_sha
from workers import notify, outbox_sender
from workers.http import HttpRequest, encode_json
from workers.statuses import (
    ELLIPSIS,
    REPORTERS,
    StatusUpdate,
    api_base,
    bitbucket,
    bitbucket_server,
    describe_state,
    gitea,
    github,
    gitlab,
    one_line,
    truncate,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
NEWER = "fedcba9876543210fedcba9876543210fedcba98"
TOKEN = "tok-sekrit-123"
TARGET = "https://deploy.example.com/deployments/7"

GITHUB_HOST = HostConfig(name="gh", kind="github", api_url="https://api.github.com", token=Secret(TOKEN))
GHES_HOST = HostConfig(name="ghes", kind="github", api_url="https://ghe.example.com/api/v3", token=Secret(TOKEN))
GITEA_HOST = HostConfig(name="tea", kind="gitea", api_url="https://gitea.example.com", token=Secret(TOKEN))
GITLAB_HOST = HostConfig(name="lab", kind="gitlab", api_url="https://gitlab.example.com", token=Secret(TOKEN))
BITBUCKET_HOST = HostConfig(name="bb", kind="bitbucket", api_url="https://api.bitbucket.org", token=Secret(TOKEN))
BITBUCKET_DC_HOST = HostConfig(name="bbdc", kind="bitbucket-server", api_url="https://git.example.com/bitbucket",
                               token=Secret(TOKEN))

S = DeploymentState


def build(module: object, host: HostConfig, state: DeploymentState, description: str = "d", **kw: str) -> HttpRequest:
    builder = module.build_status_request  # type: ignore[attr-defined]
    request: HttpRequest = builder(host, update(state, description, **kw))
    return request


def update(state: DeploymentState, description: str = "d", *, repo: str = "acme/shop", context: str = "deploy/shop",
           target_url: str = TARGET, ref: str = "") -> StatusUpdate:
    return StatusUpdate(repo=repo, sha=SHA, state=state, context=context, description=description,
                        target_url=target_url, ref=ref)


def body(request: HttpRequest) -> dict[str, object]:
    return json.loads(request.body())  # type: ignore[no-any-return]


class TestStateMapping:
    @pytest.mark.parametrize(
        ("state", "gh", "tea", "lab"),
        [
            (S.QUEUED, "pending", "pending", "pending"),
            (S.RUNNING, "pending", "pending", "running"),
            (S.SUCCEEDED, "success", "success", "success"),
            (S.FAILED, "failure", "failure", "failed"),
            (S.ERROR, "error", "error", "failed"),
            (S.SKIPPED, "success", "success", "skipped"),
            (S.SUPERSEDED, "error", "error", "canceled"),
            (S.CANCELLED, "error", "error", "canceled"),
        ],
    )
    def test_every_state_maps_to_each_hosts_own_state(
        self, state: DeploymentState, gh: str, tea: str, lab: str
    ) -> None:
        """Each deployment state becomes the documented state of each host."""
        assert body(build(github, GITHUB_HOST, state))["state"] == gh
        assert body(build(gitea, GITEA_HOST, state))["state"] == tea
        assert body(build(gitlab, GITLAB_HOST, state))["state"] == lab

    @pytest.mark.parametrize("state", list(S))
    def test_mapped_states_are_in_each_hosts_allowed_set(self, state: DeploymentState) -> None:
        """No builder ever sends a state its host does not accept (the sets its API documents;
        Gitea's newer `skipped` is never sent)."""
        assert body(build(github, GITHUB_HOST, state))["state"] in {"error", "failure", "pending", "success"}
        assert body(build(gitea, GITEA_HOST, state))["state"] in {"pending", "success", "error", "failure", "warning"}
        assert body(build(gitlab, GITLAB_HOST, state))["state"] in {
            "pending", "running", "success", "failed", "canceled", "skipped"}

    def test_forgejo_uses_the_gitea_builder(self) -> None:
        """Forgejo speaks Gitea's status API."""
        assert REPORTERS["forgejo"].build is gitea.build_status_request


class TestGithubRequest:
    def test_endpoint_auth_and_body(self) -> None:
        """POST /repos/{owner}/{repo}/statuses/{sha} with a Bearer token and GitHub's media type."""
        req = build(github, GITHUB_HOST, S.SUCCEEDED, "Deployment 7 succeeded")
        assert req.method == "POST"
        assert req.url == f"https://api.github.com/repos/acme/shop/statuses/{SHA}"
        assert req.headers["Authorization"] == f"Bearer {TOKEN}"
        assert req.headers["Accept"] == "application/vnd.github+json"
        assert req.headers["User-Agent"]
        assert body(req) == {"state": "success", "context": "deploy/shop",
                             "description": "Deployment 7 succeeded", "target_url": TARGET}

    def test_enterprise_api_prefix_is_kept(self) -> None:
        """GitHub Enterprise's `/api/v3` prefix stays in front of `/repos`."""
        assert build(github, GHES_HOST, S.QUEUED).url == f"https://ghe.example.com/api/v3/repos/acme/shop/statuses/{SHA}"

    def test_description_is_cut_to_140(self) -> None:
        """A long description is cut to GitHub's 140 characters, ending with an ellipsis."""
        description = str(body(build(github, GITHUB_HOST, S.FAILED, "x" * 500))["description"])
        assert len(description) == 140
        assert description.endswith(ELLIPSIS)

    def test_skipped_is_success_that_says_skipped(self) -> None:
        """GitHub has no skipped state: it is a success whose description says skipped and why."""
        sent = body(build(github, GITHUB_HOST, S.SKIPPED, "no change under services/shop/**"))
        assert sent["state"] == "success"
        assert sent["description"] == "Skipped: no change under services/shop/**"

    def test_no_target_url_without_public_url(self) -> None:
        """Without a public URL no target_url is sent rather than a relative one."""
        req = github.build_status_request(GITHUB_HOST, update(S.QUEUED, target_url=""))
        assert "target_url" not in body(req)

    def test_a_host_without_token_is_refused_without_leaking(self) -> None:
        """Building for a host without a token fails with a message naming the host."""
        with pytest.raises(ValueError, match="'gh' has no token"):
            github.build_status_request(HostConfig("gh", "github", "https://x"), update(S.QUEUED))


class TestGiteaRequest:
    def test_endpoint_auth_and_body(self) -> None:
        """POST /api/v1/repos/{owner}/{repo}/statuses/{sha} with `Authorization: token`."""
        req = build(gitea, GITEA_HOST, S.FAILED, "Deployment 7 failed: build")
        assert req.url == f"https://gitea.example.com/api/v1/repos/acme/shop/statuses/{SHA}"
        assert req.headers["Authorization"] == f"token {TOKEN}"
        assert body(req) == {"state": "failure", "context": "deploy/shop",
                             "description": "Deployment 7 failed: build", "target_url": TARGET}

    def test_api_url_that_already_names_the_api_path(self) -> None:
        """An api_url ending in /api/v1 is not given a second /api/v1."""
        host = HostConfig("tea", "gitea", "https://git.example.com/sub/api/v1/", Secret(TOKEN))
        assert build(gitea, host, S.QUEUED).url == f"https://git.example.com/sub/api/v1/repos/acme/shop/statuses/{SHA}"

    def test_description_is_cut_to_255(self) -> None:
        """Gitea documents no limit; descriptions are cut to 255 characters all the same."""
        assert len(str(body(build(gitea, GITEA_HOST, S.ERROR, "y" * 999))["description"])) == 255


class TestGitlabRequest:
    def test_endpoint_auth_and_body(self) -> None:
        """POST /api/v4/projects/{url-encoded path}/statuses/{sha} with PRIVATE-TOKEN and `name`."""
        wiki = update(S.RUNNING, "running", repo="acme/docs/wiki", context="deploy/wiki", ref="refs/heads/main")
        req = gitlab.build_status_request(GITLAB_HOST, wiki)
        assert req.url == f"https://gitlab.example.com/api/v4/projects/acme%2Fdocs%2Fwiki/statuses/{SHA}"
        assert req.headers["PRIVATE-TOKEN"] == TOKEN
        assert "Authorization" not in req.headers
        assert body(req) == {"state": "running", "name": "deploy/wiki", "description": "running",
                             "target_url": TARGET, "ref": "main"}

    def test_tag_ref_is_sent_short(self) -> None:
        """A tag deployment's ref is sent as the tag name."""
        assert body(build(gitlab, GITLAB_HOST, S.QUEUED, ref="refs/tags/v1.2"))["ref"] == "v1.2"

    def test_overlong_target_url_is_left_out(self) -> None:
        """A target_url over 255 characters is omitted: a cut URL would point elsewhere."""
        long_url = "https://deploy.example.com/" + "a" * 300
        req = gitlab.build_status_request(GITLAB_HOST, update(S.QUEUED, target_url=long_url))
        assert "target_url" not in body(req)

    def test_description_is_cut_to_255(self) -> None:
        """GitLab rejects descriptions over 255 characters: they are cut with an ellipsis."""
        description = str(body(build(gitlab, GITLAB_HOST, S.FAILED, "z" * 256))["description"])
        assert len(description) == 255
        assert description.endswith(ELLIPSIS)


class TestBitbucketRequest:
    """Bitbucket Cloud's build statuses (developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses)."""

    def test_endpoint_auth_and_body(self) -> None:
        """POST /2.0/repositories/{workspace}/{repo_slug}/commit/{sha}/statuses/build with a bearer token;
        the context is the status `key` (a later status of the key replaces it) and its `name`."""
        req = build(bitbucket, BITBUCKET_HOST, S.RUNNING, "Deployment 7 running", ref="refs/heads/main")
        assert req.method == "POST"
        assert req.url == f"https://api.bitbucket.org/2.0/repositories/acme/shop/commit/{SHA}/statuses/build"
        assert req.headers["Authorization"] == f"Bearer {TOKEN}"
        assert body(req) == {"key": "deploy/shop", "state": "INPROGRESS", "name": "deploy/shop",
                             "description": "Deployment 7 running", "url": TARGET, "refname": "main"}

    @pytest.mark.parametrize(
        ("state", "cloud", "dc"),
        [(S.QUEUED, "INPROGRESS", "INPROGRESS"), (S.RUNNING, "INPROGRESS", "INPROGRESS"),
         (S.SUCCEEDED, "SUCCESSFUL", "SUCCESSFUL"), (S.FAILED, "FAILED", "FAILED"), (S.ERROR, "FAILED", "FAILED"),
         (S.SKIPPED, "SUCCESSFUL", "SUCCESSFUL"), (S.SUPERSEDED, "STOPPED", "CANCELLED"),
         (S.CANCELLED, "STOPPED", "CANCELLED")],
    )
    def test_every_state_maps_to_a_documented_bitbucket_state(self, state: DeploymentState, cloud: str,
                                                               dc: str) -> None:
        """Cloud takes INPROGRESS/SUCCESSFUL/FAILED/STOPPED, Data Center CANCELLED where Cloud says STOPPED."""
        assert body(build(bitbucket, BITBUCKET_HOST, state))["state"] == cloud
        assert body(build(bitbucket_server, BITBUCKET_DC_HOST, state))["state"] == dc

    def test_skipped_is_successful_and_says_so(self) -> None:
        """Bitbucket has no skipped state: a skip is SUCCESSFUL with a description that says skipped."""
        assert body(build(bitbucket, BITBUCKET_HOST, S.SKIPPED, "no change"))["description"] == "Skipped: no change"

    def test_without_public_url_no_status_is_built(self) -> None:
        """Bitbucket requires a link: without public_url the builder refuses, naming the setting."""
        for module, host in ((bitbucket, BITBUCKET_HOST), (bitbucket_server, BITBUCKET_DC_HOST)):
            with pytest.raises(ValueError, match=r"\[server\] public_url"):
                module.build_status_request(host, update(S.QUEUED, target_url=""))

    def test_a_host_without_token_is_refused(self) -> None:
        """A Bitbucket host without a token cannot post statuses, and the message names the host."""
        with pytest.raises(ValueError, match="'bb' has no token"):
            bitbucket.build_status_request(HostConfig("bb", "bitbucket", "https://x"), update(S.QUEUED))

    def test_description_is_cut_to_255(self) -> None:
        """Bitbucket documents no limit; descriptions are cut to 255 characters as for Gitea."""
        assert len(str(body(build(bitbucket, BITBUCKET_HOST, S.FAILED, "b" * 999))["description"])) == 255


class TestBitbucketServerRequest:
    """Bitbucket Data Center's build status API
    (developer.atlassian.com/server/bitbucket/how-tos/updating-build-status-for-commits)."""

    def test_endpoint_auth_and_body(self) -> None:
        """POST {api_url}/rest/api/latest/projects/{key}/repos/{slug}/commits/{sha}/builds with the full ref."""
        req = bitbucket_server.build_status_request(
            BITBUCKET_DC_HOST, update(S.SUCCEEDED, "Deployment 7 succeeded", repo="OPS/console", ref="refs/tags/v2"))
        assert req.url == ("https://git.example.com/bitbucket/rest/api/latest/projects/OPS/repos/console"
                           f"/commits/{SHA}/builds")
        assert req.headers["Authorization"] == f"Bearer {TOKEN}"
        assert body(req) == {"key": "deploy/shop", "state": "SUCCESSFUL", "name": "deploy/shop",
                             "description": "Deployment 7 succeeded", "url": TARGET, "ref": "refs/tags/v2"}

    def test_a_rollback_names_no_ref(self) -> None:
        """A deployment without a ref (a rollback) sends no `ref` field."""
        assert "ref" not in body(build(bitbucket_server, BITBUCKET_DC_HOST, S.QUEUED))


class TestDescriptions:
    def test_superseded_names_the_newer_sha(self) -> None:
        """A superseded deployment's description carries the store's reason, which names the newer sha."""
        text = describe_state("7", S.SUPERSEDED, f"superseded by {NEWER[:12]} (deployment 8)")
        assert text == f"Not deployed: superseded by {NEWER[:12]} (deployment 8)"

    def test_a_running_deployment_cancelled_says_who_when_and_what_serves(self) -> None:
        """A deployment cancelled while it ran carries its job's reason; one cancelled before it ran the
        generic sentence."""
        reason = f"cancelled by alice while building; {NEWER[:12]} is still live"
        assert describe_state("7", S.CANCELLED, reason) == f"Not deployed: {reason}"
        assert describe_state("7", S.CANCELLED, "cancelled") == "Not deployed: cancelled by an operator"

    def test_only_the_first_line_of_an_error(self) -> None:
        """A multi-line error (a container log) becomes its first non-blank line, whitespace collapsed."""
        text = describe_state("7", S.FAILED, "\n  health check   failed: web\nline 2\nline 3")
        assert text == "Deployment 7 failed: health check failed: web"

    @pytest.mark.parametrize("state", list(S))
    def test_every_state_has_a_description(self, state: DeploymentState) -> None:
        """Every state, with or without an error, gets a non-empty single-line description."""
        for error in ("", "boom\nmore"):
            text = describe_state("1", state, error)
            assert text
            assert "\n" not in text

    def test_api_base_adds_the_path_once(self) -> None:
        """api_base appends the API path unless it is already there."""
        assert api_base("https://h/", "/api/v4") == "https://h/api/v4"
        assert api_base("https://h/api/v4", "/api/v4") == "https://h/api/v4"

    @given(st.text())
    def test_one_line_never_has_a_line_break(self, text: str) -> None:
        """one_line's result never contains a line break."""
        assert not any(c in one_line(text) for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class TestTruncation:
    @given(st.text(), st.integers(min_value=1, max_value=400))
    def test_result_fits_the_limit(self, text: str, limit: int) -> None:
        """A truncated text is never longer than the limit."""
        assert len(truncate(text, limit)) <= limit

    @given(st.text(), st.integers(min_value=1, max_value=400))
    def test_short_text_is_unchanged_and_long_text_keeps_its_start(self, text: str, limit: int) -> None:
        """Text that fits is unchanged; longer text keeps its start and ends with an ellipsis."""
        cut = truncate(text, limit)
        if len(text) <= limit:
            assert cut == text
        else:
            assert len(cut) == limit
            assert cut.endswith(ELLIPSIS)
            assert text.startswith(cut[:-1])

    @given(st.text(min_size=141, max_size=1000))
    def test_github_builder_never_exceeds_140(self, description: str) -> None:
        """Whatever the description, GitHub never receives more than 140 characters."""
        sent = body(build(github, GITHUB_HOST, S.FAILED, description))["description"]
        assert isinstance(sent, str)
        assert len(sent) <= defaults.GITHUB_DESCRIPTION_LIMIT

    def test_limit_below_one_is_refused(self) -> None:
        """A limit of zero is a programming error, reported as such."""
        with pytest.raises(ValueError, match="at least 1"):
            truncate("abc", 0)


class TestRequestSecrecy:
    def test_repr_shows_no_token_and_no_path(self) -> None:
        """An HttpRequest's repr names method, scheme and host only: no token, no (Slack) path."""
        req = HttpRequest("POST", "https://hooks.slack.com/services/T0/B0/sekrit", {"Authorization": "Bearer x9"})
        text = repr(req) + str(req) + req.describe()
        assert "sekrit" not in text
        assert "x9" not in text
        assert "hooks.slack.com" in text

    @pytest.mark.parametrize(("module", "host"), [(github, GITHUB_HOST), (gitea, GITEA_HOST), (gitlab, GITLAB_HOST),
                                                  (bitbucket, BITBUCKET_HOST), (bitbucket_server, BITBUCKET_DC_HOST)])
    def test_repr_of_a_status_request_hides_the_token(self, module: object, host: HostConfig) -> None:
        """No builder's request shows its token when printed."""
        assert TOKEN not in repr(build(module, host, S.QUEUED))


def event(state: DeploymentState = S.SUCCEEDED, error: str = "") -> OutboxEvent:
    return OutboxEvent(id="ev1", kind="webhook", deployment_id="7", app="shop", sha=SHA,
                       ref="refs/heads/main", state=state, error=error, at=1.0)


class TestNotificationRequests:
    def test_webhook_body_and_signature(self) -> None:
        """The webhook carries app, deployment id, sha, state, error and url, signed over the exact body."""
        cfg = NotifyConfig(webhook_url="https://hooks.example.com/x", webhook_secret=Secret("n-secret"))
        req = notify.build_webhook_request(cfg, event(S.FAILED, "build failed"), TARGET)
        assert json.loads(req.body()) == {"app": "shop", "deployment_id": "7", "sha": SHA, "ref": "refs/heads/main",
                                          "state": "failed", "error": "build failed", "url": TARGET}
        assert req.headers["X-Hooksvc-Event"] == "deployment"
        assert notify.verify_signature(req.body(), "n-secret", req.headers["X-Hooksvc-Signature-256"])
        assert not notify.verify_signature(req.body() + b" ", "n-secret", req.headers["X-Hooksvc-Signature-256"])

    @given(st.binary(), st.text(min_size=1))
    def test_sign_and_verify_round_trip(self, raw: bytes, secret: str) -> None:
        """A signature verifies against its own body and secret, and not against another secret."""
        signature = notify.sign(raw, secret)
        assert signature.startswith("sha256=")
        assert notify.verify_signature(raw, secret, signature)
        assert not notify.verify_signature(raw, secret + "x", signature)

    def test_slack_text(self) -> None:
        """The Slack message names app, deployment, short sha, state and reason, with a link, escaped."""
        cfg = NotifyConfig(slack_url=Secret("https://hooks.slack.com/services/T/B/s"))
        req = notify.build_slack_request(cfg, event(S.FAILED, "health <web> & db\nmore"), TARGET)
        assert json.loads(req.body()) == {
            "text": f":x: shop: deployment 7 of `{SHA[:12]}` failed: health &lt;web&gt; &amp; db (<{TARGET}|details>)",
        }

    def test_json_encoding_is_deterministic(self) -> None:
        """The same payload always encodes to the same bytes, whatever the key order."""
        assert encode_json({"b": 1, "a": "é"}) == encode_json({"a": "é", "b": 1}) == '{"a":"é","b":1}'.encode()


class TestRetryPolicy:
    @pytest.mark.parametrize(("status", "ok", "retryable"), [
        (200, True, False), (201, True, False), (301, False, False), (400, False, False), (401, False, False),
        (404, False, False), (422, False, False), (408, False, True), (409, False, True), (429, False, True),
        (500, False, True), (502, False, True), (503, False, True),
    ])
    def test_classify(self, status: int, ok: bool, retryable: bool) -> None:
        """2xx delivers; 5xx, 408, 409 and 429 are retried; other 3xx/4xx are not."""
        attempt = outbox_sender.classify(status)
        assert (attempt.ok, attempt.retryable) == (ok, retryable)

    @given(st.integers(min_value=1, max_value=100), st.floats(min_value=0, max_value=1, exclude_max=True))
    def test_backoff_doubles_is_capped_and_jittered(self, attempts: int, r: float) -> None:
        """The delay is between half and all of base·2^(n-1), capped at the maximum."""
        step = min(defaults.REPORT_BACKOFF_SECONDS * 2 ** (attempts - 1), defaults.REPORT_BACKOFF_MAX_SECONDS)
        delay = outbox_sender.backoff_seconds(attempts, lambda: r)
        assert step / 2 <= delay <= step

    def test_backoff_grows(self) -> None:
        """Without jitter the steps are 1, 2, 4, ... up to the cap."""
        delays = [outbox_sender.backoff_seconds(n, lambda: 1.0) for n in range(1, 9)]
        assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


class TestOutboxEvent:
    @given(st.sampled_from(list(S)), st.text(), st.text())
    def test_json_round_trip(self, state: DeploymentState, error: str, ref: str) -> None:
        """An event survives its trip through Redis unchanged."""
        ev = OutboxEvent("id", "status", "7", "shop", SHA, ref, state, error, 12.5)
        assert OutboxEvent.from_json(ev.to_json()) == ev

    def test_statuses_need_a_full_sha(self) -> None:
        """Only a full object id (SHA-1 or SHA-256) can carry a status."""
        assert is_full_sha(SHA)
        assert is_full_sha("a" * 64)
        assert not is_full_sha("")
        assert not is_full_sha(SHA[:12])
        assert not is_full_sha("main")
