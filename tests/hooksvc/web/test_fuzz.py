"""The front door under random input: `/hooks/*` and `/api/*` through Flask's client and a real Redis.

Whatever arrives — any method, headers, content type, encoding, size or truncation — the answer is
never a 5xx (Redis is up, so not even 503), nothing is deployed without a valid signature or token,
and no traceback reaches the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hooksvc import keys
from hooksvc.web import create_app
from tests.helpers.config import MORE_HOSTS_APPS, MORE_HOSTS_ENV, make_config
from tests.helpers.payloads import (
    bitbucket_change,
    bitbucket_push,
    bitbucket_request,
    bitbucket_server_push,
    bitbucket_server_request,
    commit_sha,
    gitea_push,
    gitea_request,
    github_push,
    github_request,
    gitlab_push,
    gitlab_request,
    gogs_push,
    gogs_request,
)

#: Inputs tried per property; the closing note of the security work reports the totals.
EXAMPLES = 1500

SHOP, BLOG, WIKI = "shop-webhook-secret", "blog-webhook-secret", "wiki-webhook-secret"

METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
PATHS = st.sampled_from([
    "/hooks/github", "/hooks/gitea", "/hooks/gitlab", "/hooks/bitbucket", "/hooks/bitbucket-server", "/hooks/gogs",
    "/hooks/sourcehut", "/hooks/",
    "/api/apps", "/api/apps/shop/deploy", "/api/apps/shop/rollback", "/api/apps/nope/deploy",
    "/api/deployments", "/api/deployments/1", "/api/deployments/next", "/api/deployments/1/cancel",
    "/api/deployments/-1/cancel", "/api/deployments/1/log", "/api/deployments/x%00y", "/healthz",
])
CONTENT_TYPES = st.one_of(
    st.sampled_from([
        "application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
        "application/json; charset=utf-16", "application/x-www-form-urlencoded; charset=latin-1", "",
    ]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
#: Header values as HTTP allows them: visible Latin-1 and spaces, no line breaks.
HEADER_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=80)
HEADER_NAMES = st.sampled_from([
    "X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256", "X-Gitea-Event", "X-Gitea-Signature",
    "X-Forgejo-Signature", "X-Gitea-Delivery", "X-Gitlab-Event", "X-Gitlab-Token", "X-Gitlab-Event-UUID",
    "Authorization", "Content-Encoding", "Transfer-Encoding", "Origin", "Cookie",
    "X-Event-Key", "X-Hub-Signature", "X-Request-UUID", "X-Request-Id", "X-Gogs-Event", "X-Gogs-Signature",
])
BODIES = st.one_of(
    st.binary(max_size=4096),
    st.text(max_size=2048).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
        max_leaves=30,
    ).map(lambda v: __import__("json").dumps(v).encode()),
    st.lists(st.tuples(st.text(max_size=10), st.text(max_size=30)), max_size=20).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")),
)
QUERIES = st.one_of(st.just(""), st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60))


@pytest.fixture
def fuzz_app(tmp_path: Path, redis: redis_lib.Redis) -> Flask:
    """The web app for `make_config`'s three apps and one on each host of `MORE_HOSTS_APPS`, with the
    production store listeners."""
    return create_app(make_config(tmp_path, MORE_HOSTS_APPS, env=MORE_HOSTS_ENV), connection=redis)


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, [r.getMessage()[:200] for r in bad]


def assert_nothing_deployed(redis: redis_lib.Redis) -> None:
    assert redis.get(keys.NEXT_ID) is None, "a deployment was recorded without a valid signature or token"
    assert redis.llen(keys.INTAKE) == 0


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    deadline=None,
)


@pytest.mark.usefixtures("no_tracebacks")
class TestRandomRequests:
    @FUZZ_SETTINGS
    @given(method=METHODS, path=PATHS, query=QUERIES, content_type=CONTENT_TYPES,
           headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=6), body=BODIES)
    def test_any_request_gets_a_4xx_or_success_and_deploys_nothing(
        self, fuzz_app: Flask, redis: redis_lib.Redis, method: str, path: str, query: str,
        content_type: str, headers: dict[str, str], body: bytes,
    ) -> None:
        """Random method, path, query, headers, content type and body: never a 5xx, never a deployment."""
        redis.flushdb()  # one fixture serves every example
        client: FlaskClient = fuzz_app.test_client()
        all_headers = {**headers, **({"Content-Type": content_type} if content_type else {})}
        resp = client.open(path, method=method, query_string=query, headers=all_headers, data=body)
        assert resp.status_code < 500, (resp.status_code, resp.get_data()[:300])
        assert_nothing_deployed(redis)


def _signed(host: str, n: int) -> tuple[str, dict[str, object]]:
    """A valid signed push for one of the hosts, as client.open keyword arguments."""
    if host == "github":
        return "/hooks/github", github_request(github_push(after=commit_sha(n)), SHOP).client_kwargs()
    if host == "gitea":
        tag = gitea_push(ref="refs/tags/v1.0", after=commit_sha(n))
        return "/hooks/gitea", gitea_request(tag, BLOG).client_kwargs()
    if host == "bitbucket":
        change = bitbucket_change("refs/heads/main", commit_sha(n), commit_sha(0))
        return "/hooks/bitbucket", bitbucket_request(bitbucket_push("acme/api", change),
                                                     MORE_HOSTS_ENV["API_SECRET"]).client_kwargs()
    if host == "bitbucket-server":
        push = bitbucket_server_push("OPS/console", "refs/heads/main", commit_sha(n))
        hook = bitbucket_server_request(push, MORE_HOSTS_ENV["CONSOLE_SECRET"])
        return "/hooks/bitbucket-server", hook.client_kwargs()
    if host == "gogs":
        push = gogs_push("acme/docs", after=commit_sha(n))
        return "/hooks/gogs", gogs_request(push, MORE_HOSTS_ENV["DOCS_SECRET"]).client_kwargs()
    return "/hooks/gitlab", gitlab_request(gitlab_push(ref="refs/heads/release/1", after=commit_sha(n)),
                                           WIKI).client_kwargs()


@pytest.mark.usefixtures("no_tracebacks")
class TestTamperedSignedPushes:
    @FUZZ_SETTINGS
    @given(host=st.sampled_from(["github", "gitea", "gitlab", "bitbucket", "bitbucket-server", "gogs"]),
           n=st.integers(1, 10**6),
           cut=st.integers(0, 10**6), flip=st.integers(0, 10**6), mode=st.sampled_from(["truncate", "flip", "extend"]))
    def test_a_changed_body_under_a_valid_signature_or_token_never_deploys_twice(
        self, fuzz_app: Flask, redis: redis_lib.Redis, host: str, n: int, cut: int, flip: int, mode: str,
    ) -> None:
        """A signed push whose body was truncated, bit-flipped or extended is refused with a 4xx (GitHub,
        Gitea, Bitbucket and Gogs sign the body); GitLab's token is no signature, so its altered push may
        still be accepted."""
        redis.flushdb()  # one fixture serves every example
        path, kwargs = _signed(host, n)
        body = bytes(kwargs["data"])  # type: ignore[call-overload]
        if not body:
            return
        if mode == "truncate":
            body = body[: cut % len(body)]
        elif mode == "flip":
            i = flip % len(body)
            body = body[:i] + bytes([body[i] ^ (1 << (cut % 8))]) + body[i + 1:]
        else:
            body = body + b" "
        client: FlaskClient = fuzz_app.test_client()
        resp = client.open(path, **{**kwargs, "data": body})  # type: ignore[arg-type]
        assert resp.status_code < 500, (resp.status_code, resp.get_data()[:300])
        if host == "gitlab":
            return
        assert resp.status_code in (400, 401), (resp.status_code, resp.get_data()[:300])
        assert_nothing_deployed(redis)
