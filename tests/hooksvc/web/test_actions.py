"""The dashboard's actions (deploy, roll back, cancel) through Flask's client: the confirm step, the
per-session CSRF token every form carries, the role each needs, and the audit trail (SPEC §11)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from hooksvc import app_locks, audit
from hooksvc.deployments import Deployment, DeploymentState, NewDeployment, Trigger
from hooksvc.store import DeploymentStore
from hooksvc.web import actions, create_app
from tests.helpers.config import DAN_TOKEN, OPERATOR_ENV, OPERATORS, VERA_TOKEN, make_config

SHA_OLD, SHA_LIVE, SHA_NEW = "0a" * 20, "1b" * 20, "2c" * 20
UA = {"User-Agent": "actions-test/1.0"}
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


@pytest.fixture
def team(tmp_path: Path, redis: redis_lib.Redis) -> Flask:
    """An app with a viewer (vera), a deployer (dan) and the api_tokens admins."""
    return create_app(make_config(tmp_path, OPERATORS, env=OPERATOR_ENV), connection=redis, listeners=[])


def logged_in(team: Flask, token: str) -> FlaskClient:
    """A client with a login session opened with `token`."""
    client = team.test_client()
    answer = client.post("/login", data={"token": token, "next": "/"}, headers=UA)
    assert answer.status_code == 302
    return client


def csrf_of(client: FlaskClient) -> str:
    """The CSRF token the session's pages put in their forms (the confirm page always has one)."""
    page = client.get("/apps/shop/deploy", headers=UA).get_data(as_text=True)
    found = CSRF.search(page)
    assert found, page
    return found.group(1)


def went_live(store: DeploymentStore, sha: str, operator: str = "") -> str:
    trigger = Trigger.MANUAL if operator else Trigger.PUSH
    new = NewDeployment("shop", sha, "refs/heads/main", trigger, operator=operator)
    dep = store.intake.submit([new]).deployments[0]
    store.start(dep.id, "")
    store.finish(dep.id, DeploymentState.SUCCEEDED, live_sha=sha)
    return dep.id


@pytest.fixture
def history(store: DeploymentStore) -> dict[str, str]:
    """Two releases of shop that went live (the second is live) and a push queued behind them; blog is
    locked by alice."""
    ids = {"old": went_live(store, SHA_OLD), "live": went_live(store, SHA_LIVE, operator="dan")}
    ids["queued"] = store.intake.submit(
        [NewDeployment("shop", SHA_NEW, "refs/heads/main", Trigger.PUSH)]).deployments[0].id
    app_locks.lock(store, BLOG, "alice", "database migration")
    return ids


BLOG = make_config(Path("/nonexistent"), OPERATORS, env=OPERATOR_ENV).apps["blog"]


def newest_is(store: DeploymentStore, redis: redis_lib.Redis, sha: str, trigger: Trigger, action: str) -> None:
    """The newest deployment of shop is dan's `trigger` of `sha`, and the newest audit entry its `action`."""
    dep = store.recent(app="shop", limit=1)[0]
    assert (dep.sha, dep.trigger, dep.operator) == (sha, trigger, "dan")
    assert audit.recent(redis, limit=1)[0].action == action


def everything(store: DeploymentStore) -> list[Deployment]:
    return store.recent(limit=100)


# (path, form fields besides the token): every form route of the dashboard.
FORMS = [
    ("/apps/shop/deploy", {"sha": SHA_NEW}),
    ("/apps/shop/redeploy", {}),
    ("/apps/shop/rollback", {"to": SHA_OLD}),
    ("/deployments/{queued}/cancel", {}),
    ("/apps/shop/lock", {"reason": "sale tonight"}),
    ("/apps/blog/unlock", {}),
]
FORM_IDS = ["deploy", "redeploy", "rollback", "cancel", "lock", "unlock"]
#: The least role of each form route, and a token of the role just below it.
LEAST_ROLE = {"deploy": "deployer", "redeploy": "deployer", "rollback": "deployer", "cancel": "deployer",
              "lock": "admin", "unlock": "admin"}
BELOW = {"deployer": (VERA_TOKEN, "vera is a viewer"), "admin": (DAN_TOKEN, "dan is a deployer")}


class TestDashboardForms:
    def test_a_deployer_sees_deploy_and_rollback_a_viewer_does_not(self, team: Flask, history: dict[str, str]) -> None:
        """The dashboard offers a deployer the deploy form and the rollback link; a viewer gets neither."""
        dan = logged_in(team, DAN_TOKEN).get("/").get_data(as_text=True)
        assert 'action="/apps/shop/deploy"' in dan and 'href="/apps/shop/rollback"' in dan
        vera = logged_in(team, VERA_TOKEN).get("/").get_data(as_text=True)
        assert "/apps/shop/deploy" not in vera and "/apps/shop/rollback" not in vera

    def test_a_queued_deployment_page_has_a_cancel_form_with_the_token(
        self, team: Flask, history: dict[str, str]
    ) -> None:
        """A queued deployment's page carries a cancel form with the session's token; a finished one has none."""
        dan = logged_in(team, DAN_TOKEN)
        page = dan.get(f"/deployments/{history['queued']}").get_data(as_text=True)
        assert f'action="/deployments/{history["queued"]}/cancel"' in page
        found = CSRF.search(page)
        assert found is not None and found.group(1) == csrf_of(dan)
        assert "/cancel" not in dan.get(f"/deployments/{history['live']}").get_data(as_text=True)

    def test_sessions_have_tokens_of_their_own(self, team: Flask) -> None:
        """Two logins get two different CSRF tokens, each a long random string."""
        first, second = csrf_of(logged_in(team, DAN_TOKEN)), csrf_of(logged_in(team, DAN_TOKEN))
        assert first != second and len(first) >= 40


class TestConfirmStep:
    def test_deploy_confirm_shows_what_changes_and_changes_nothing(
        self, team: Flask, store: DeploymentStore, history: dict[str, str]
    ) -> None:
        """The confirm page names the commit, the live release it replaces, the queued one it supersedes and
        the compose files, and opening it queues nothing."""
        before = everything(store)
        page = logged_in(team, DAN_TOKEN).get(f"/apps/shop/deploy?sha={SHA_OLD}").get_data(as_text=True)
        assert "Deploy shop?" in page and SHA_OLD in page and SHA_LIVE[:12] in page
        assert f"#{history['old']}" in page  # the deployment that shipped this commit before
        assert f"queued <a href=\"/deployments/{history['queued']}\">#{history['queued']}</a>" in page
        assert "docker-compose.yml" in page
        assert everything(store) == before

    def test_deploy_of_the_branch_head(self, team: Flask, store: DeploymentStore) -> None:
        """Without a sha the confirm page says the head of the branch, and the deploy resolves it later."""
        dan = logged_in(team, DAN_TOKEN)
        assert "the head of refs/heads/main" in dan.get("/apps/shop/deploy").get_data(as_text=True)
        answer = dan.post("/apps/shop/deploy", data={"csrf_token": csrf_of(dan), "sha": "", "ref": ""})
        assert answer.status_code == 303
        dep = store.recent(app="shop", limit=1)[0]
        assert (dep.sha, dep.ref, dep.trigger, dep.operator) == ("", "refs/heads/main", Trigger.MANUAL, "dan")

    def test_rollback_lists_the_releases_that_went_live(
        self, team: Flask, history: dict[str, str]
    ) -> None:
        """The rollback page lists each release with its deployment and who shipped it; the live one is
        marked and offers no rollback, the older one links to its confirm step."""
        page = logged_in(team, DAN_TOKEN).get("/apps/shop/rollback").get_data(as_text=True)
        assert page.index(SHA_LIVE[:12]) < page.index(SHA_OLD[:12])
        assert f'href="/apps/shop/rollback?to={SHA_OLD}"' in page
        assert f'?to={SHA_LIVE}"' not in page and ">live<" in page and ">dan<" in page

    def test_a_bad_sha_is_a_400_naming_the_key(self, team: Flask) -> None:
        """A sha that is not hex is refused, the message naming the field."""
        answer = logged_in(team, DAN_TOKEN).get("/apps/shop/rollback?to=HEAD~1")
        assert answer.status_code == 400 and "&#39;to&#39; is not a valid sha" in answer.get_data(as_text=True)

    def test_an_unknown_app_is_a_404(self, team: Flask) -> None:
        """A confirm page of an app that is not configured is a 404 page."""
        assert logged_in(team, DAN_TOKEN).get("/apps/nope/deploy").status_code == 404


class TestActions:
    def test_deploy_queues_the_commit_and_audits_it(
        self, team: Flask, store: DeploymentStore, redis: redis_lib.Redis, history: dict[str, str]
    ) -> None:
        """A confirmed deploy queues the commit as dan's manual deployment, shows its page, and is audited
        with dan, the address and the user agent."""
        dan = logged_in(team, DAN_TOKEN)
        answer = dan.post("/apps/shop/deploy", data={"csrf_token": csrf_of(dan), "sha": SHA_OLD}, headers=UA)
        assert answer.status_code == 303
        dep = store.recent(app="shop", limit=1)[0]
        assert answer.headers["Location"] == f"/deployments/{dep.id}"
        assert (dep.sha, dep.trigger, dep.operator, dep.state) == (SHA_OLD, Trigger.MANUAL, "dan",
                                                                   DeploymentState.QUEUED)
        entry = audit.recent(redis, app="shop", limit=1)[0]
        assert (entry.action, entry.result, entry.operator, entry.sha, entry.deployment) == (
            audit.DEPLOY, audit.OK, "dan", SHA_OLD, dep.id)
        assert entry.address == "127.0.0.1" and entry.user_agent == UA["User-Agent"]

    def test_rollback_queues_the_chosen_release(
        self, team: Flask, store: DeploymentStore, redis: redis_lib.Redis, history: dict[str, str]
    ) -> None:
        """A confirmed rollback queues a rollback to the chosen release, audited as dan's."""
        dan = logged_in(team, DAN_TOKEN)
        assert dan.post("/apps/shop/rollback", data={"csrf_token": csrf_of(dan), "to": SHA_OLD}).status_code == 303
        newest_is(store, redis, SHA_OLD, Trigger.ROLLBACK, audit.ROLLBACK)

    def test_cancel_ends_the_queued_deployment(
        self, team: Flask, store: DeploymentStore, redis: redis_lib.Redis, history: dict[str, str]
    ) -> None:
        """Cancel ends a queued deployment and shows its page; a second cancel is a 409 that says why."""
        dan = logged_in(team, DAN_TOKEN)
        token = csrf_of(dan)
        answer = dan.post(f"/deployments/{history['queued']}/cancel", data={"csrf_token": token})
        assert answer.status_code == 303 and answer.headers["Location"] == f"/deployments/{history['queued']}"
        assert store.get(history["queued"]).state is DeploymentState.CANCELLED
        entry = audit.recent(redis, limit=1)[0]
        assert (entry.action, entry.result, entry.deployment) == (audit.CANCEL, audit.OK, history["queued"])
        again = dan.post(f"/deployments/{history['queued']}/cancel", data={"csrf_token": token})
        assert again.status_code == 409 and "can be cancelled" in again.get_data(as_text=True)


    def test_a_running_deployment_page_offers_cancel_then_says_who_asked(
        self, team: Flask, store: DeploymentStore, redis: redis_lib.Redis, history: dict[str, str]
    ) -> None:
        """A running deployment's page has the cancel form; posting it records dan's request (still running,
        audited `requested`), and the page then names who asked instead of offering the form again."""
        store.start(history["queued"], SHA_LIVE)
        dan = logged_in(team, DAN_TOKEN)
        page = dan.get(f"/deployments/{history['queued']}").get_data(as_text=True)
        assert f'action="/deployments/{history["queued"]}/cancel"' in page
        answer = dan.post(f"/deployments/{history['queued']}/cancel", data={"csrf_token": csrf_of(dan)})
        assert answer.status_code == 303
        assert (store.get(history["queued"]).state, store.cancel_requester(history["queued"])) == (
            DeploymentState.RUNNING, "dan")
        entry = audit.recent(redis, limit=1)[0]
        assert (entry.action, entry.result, entry.operator) == (audit.CANCEL, audit.REQUESTED, "dan")
        page = dan.get(f"/deployments/{history['queued']}").get_data(as_text=True)
        assert "cancel requested by dan" in page and "/cancel" not in page


class TestCsrfRefusals:
    """Every form route refuses a POST without its session's token with 403, and changes nothing."""

    def refused(self, store: DeploymentStore, history: dict[str, str], answer_status: int) -> None:
        assert answer_status == 403
        assert store.get(history["queued"]).state is DeploymentState.QUEUED
        assert len(everything(store)) == 3
        assert app_locks.read_lock(store.redis, "shop") is None
        assert app_locks.read_lock(store.redis, "blog") is not None

    @pytest.mark.parametrize(("path", "form"), FORMS, ids=FORM_IDS)
    def test_without_a_token(self, team: Flask, store: DeploymentStore, redis: redis_lib.Redis,
                             history: dict[str, str], path: str, form: dict[str, str]) -> None:
        """No csrf_token: 403, nothing queued or cancelled, and the refusal audited with dan's name."""
        answer = logged_in(team, DAN_TOKEN).post(path.format(**history), data=form)
        self.refused(store, history, answer.status_code)
        assert "missing or wrong CSRF token" in answer.get_data(as_text=True)
        entry = audit.recent(redis, limit=1)[0]
        assert (entry.result, entry.operator, entry.reason) == (audit.REFUSED, "dan", "missing or wrong CSRF token")

    @pytest.mark.parametrize(("path", "form"), FORMS, ids=FORM_IDS)
    def test_with_a_wrong_token(self, team: Flask, store: DeploymentStore, history: dict[str, str],
                                path: str, form: dict[str, str]) -> None:
        """A made-up token is refused like none."""
        dan = logged_in(team, DAN_TOKEN)
        answer = dan.post(path.format(**history), data={**form, "csrf_token": "x" * 43})
        self.refused(store, history, answer.status_code)

    @pytest.mark.parametrize(("path", "form"), FORMS, ids=FORM_IDS)
    def test_with_another_sessions_token(self, team: Flask, store: DeploymentStore, history: dict[str, str],
                                         path: str, form: dict[str, str]) -> None:
        """The token of another session (even of the same operator) does not open this one."""
        other = csrf_of(logged_in(team, DAN_TOKEN))
        answer = logged_in(team, DAN_TOKEN).post(path.format(**history), data={**form, "csrf_token": other})
        self.refused(store, history, answer.status_code)

    @pytest.mark.parametrize(("path", "form"), FORMS, ids=FORM_IDS)
    def test_from_another_site(self, team: Flask, store: DeploymentStore, history: dict[str, str],
                               path: str, form: dict[str, str]) -> None:
        """A POST from another origin is refused even with the right token."""
        dan = logged_in(team, DAN_TOKEN)
        answer = dan.post(path.format(**history), data={**form, "csrf_token": csrf_of(dan)},
                          headers={"Origin": "https://evil.example"})
        self.refused(store, history, answer.status_code)

    @pytest.mark.parametrize(("path", "form"), FORMS, ids=FORM_IDS)
    def test_after_logout(self, team: Flask, store: DeploymentStore, history: dict[str, str],
                          path: str, form: dict[str, str]) -> None:
        """After logout the old cookie and its token open nothing."""
        dan = logged_in(team, DAN_TOKEN)
        token = csrf_of(dan)
        cookie = dan.get_cookie("hooksvc_session")
        assert cookie is not None
        dan.post("/logout")
        dan.set_cookie("hooksvc_session", cookie.value)
        answer = dan.post(path.format(**history), data={**form, "csrf_token": token})
        self.refused(store, history, answer.status_code)

    @pytest.mark.parametrize(("path", "form"), FORMS, ids=FORM_IDS)
    @pytest.mark.parametrize("auth", ["Bearer", "Basic"])
    def test_a_token_without_a_session(self, team: Flask, store: DeploymentStore, history: dict[str, str],
                                       path: str, form: dict[str, str], auth: str) -> None:
        """Forms need a login session: an admin's token as bearer or basic auth acts on none of them."""
        value = "operator-token-1" if auth == "Bearer" else base64.b64encode(b"x:operator-token-1").decode()
        answer = team.test_client().post(path.format(**history), data=form,
                                         headers={"Authorization": f"{auth} {value}"})
        self.refused(store, history, answer.status_code)
        assert "needs a login session" in answer.get_data(as_text=True)

    @pytest.mark.parametrize(("path", "form"), FORMS, ids=FORM_IDS)
    def test_public_read_opens_no_form(self, tmp_path: Path, redis: redis_lib.Redis, store: DeploymentStore,
                                       history: dict[str, str], path: str, form: dict[str, str]) -> None:
        """Under public_read an anonymous POST is refused, and an anonymous confirm page sends to the login."""
        public = create_app(make_config(tmp_path, public_read="true"), connection=redis, listeners=[]).test_client()
        self.refused(store, history, public.post(path.format(**history), data=form).status_code)
        confirm = public.get("/apps/shop/rollback")
        assert confirm.status_code == 302 and confirm.headers["Location"].startswith("/login?next=")


class TestRoleRefusals:
    @pytest.mark.parametrize(("path", "form", "route"), [(*f, i) for f, i in zip(FORMS, FORM_IDS, strict=True)],
                             ids=FORM_IDS)
    def test_the_role_below_is_refused_naming_the_role(
        self, team: Flask, store: DeploymentStore, redis: redis_lib.Redis, history: dict[str, str],
        path: str, form: dict[str, str], route: str,
    ) -> None:
        """An operator below the route's role, with a valid session and token, gets 403 naming the missing
        role; nothing changes and the refusal is audited."""
        role = LEAST_ROLE[route]
        token, who = BELOW[role]
        client = logged_in(team, token)
        cookie = client.get_cookie("hooksvc_session")
        session = team.extensions["hooksvc"].sessions.get(cookie.value if cookie else "")
        answer = client.post(path.format(**history), data={**form, "csrf_token": session.csrf_token})
        assert f"needs the {role} role ({who})" in answer.get_data(as_text=True)
        TestCsrfRefusals().refused(store, history, answer.status_code)
        entry = audit.recent(redis, limit=1)[0]
        assert (entry.result, entry.operator) == (audit.REFUSED, who.split()[0])

    def test_a_viewers_pages_offer_no_form(self, team: Flask, history: dict[str, str]) -> None:
        """A viewer's dashboard and deployment pages carry no form and no token."""
        vera = logged_in(team, VERA_TOKEN)
        for page in ("/", f"/deployments/{history['queued']}"):
            assert CSRF.search(vera.get(page).get_data(as_text=True)) is None

    @pytest.mark.parametrize("path", ["/apps/shop/deploy", "/apps/shop/redeploy", "/apps/shop/rollback",
                                      f"/apps/shop/rollback?to={SHA_OLD}"])
    def test_a_viewer_sees_no_confirm_page(self, team: Flask, path: str) -> None:
        """The confirm and rollback pages are a deployer's too: a viewer gets a 403 page naming the role."""
        answer = logged_in(team, VERA_TOKEN).get(path)
        assert answer.status_code == 403 and "needs the deployer role" in answer.get_data(as_text=True)


def test_a_huge_form_is_refused_unread(team: Flask, store: DeploymentStore, history: dict[str, str]) -> None:
    """A form body beyond the bound is a 413, and nothing changes."""
    dan = logged_in(team, DAN_TOKEN)
    answer = dan.post("/apps/shop/deploy", data={"csrf_token": csrf_of(dan), "sha": SHA_OLD, "pad": "x" * 20000})
    assert answer.status_code == 413 and len(everything(store)) == 3


class TestRedeployAndLocks:
    def test_redeploy_confirms_then_queues_the_live_release(
        self, team: Flask, store: DeploymentStore, redis: redis_lib.Redis, history: dict[str, str]
    ) -> None:
        """The redeploy confirm step names the live release and says every service is recreated; confirmed,
        it queues that release as dan's redeploy, audited."""
        dan = logged_in(team, DAN_TOKEN)
        page = dan.get("/apps/shop/redeploy").get_data(as_text=True)
        assert "Redeploy shop?" in page and SHA_LIVE in page and "every service is recreated" in page
        assert dan.post("/apps/shop/redeploy", data={"csrf_token": csrf_of(dan)}).status_code == 303
        newest_is(store, redis, SHA_LIVE, Trigger.REDEPLOY, audit.REDEPLOY)

    def test_an_admin_locks_with_a_reason_and_unlocks(
        self, team: Flask, store: DeploymentStore, redis: redis_lib.Redis, history: dict[str, str]
    ) -> None:
        """An admin's lock holds the reason and shows on the dashboard; the unlock form ends it; both audited."""
        admin = logged_in(team, "operator-token-1")
        token = csrf_of(admin)
        answer = admin.post("/apps/shop/lock", data={"csrf_token": token, "reason": "sale tonight"})
        assert answer.status_code == 303 and answer.headers["Location"] == "/#app-shop"
        held = app_locks.read_lock(store.redis, "shop")
        assert held is not None and (held.by, held.reason) == ("token-1", "sale tonight")
        dashboard = admin.get("/").get_data(as_text=True)
        assert "locked by token-1: sale tonight" in dashboard and 'action="/apps/shop/unlock"' in dashboard
        entry = audit.recent(redis, limit=1)[0]
        assert (entry.action, entry.app, entry.reason) == (audit.LOCK, "shop", "sale tonight")
        assert admin.post("/apps/shop/unlock", data={"csrf_token": token}).status_code == 303
        assert app_locks.read_lock(store.redis, "shop") is None
        assert audit.recent(redis, limit=1)[0].action == audit.UNLOCK

    def test_a_lock_without_a_reason_is_a_400(self, team: Flask, store: DeploymentStore) -> None:
        """A lock needs a reason: the page says so and the app stays unlocked."""
        admin = logged_in(team, "operator-token-1")
        answer = admin.post("/apps/shop/lock", data={"csrf_token": csrf_of(admin), "reason": "  "})
        assert answer.status_code == 400 and "a lock needs a" in answer.get_data(as_text=True)
        assert app_locks.read_lock(store.redis, "shop") is None

    def test_a_deploy_of_a_locked_app_says_it_will_wait(self, team: Flask, history: dict[str, str]) -> None:
        """The confirm step of a locked app's deploy names the lock and says the deployment is held."""
        page = logged_in(team, DAN_TOKEN).get(f"/apps/blog/deploy?sha={SHA_NEW}").get_data(as_text=True)
        assert "blog is locked by alice: database migration" in page


class TestPlanWithoutWorker:
    def test_the_confirm_page_offers_the_plan_and_says_when_no_worker_answers(
        self, team: Flask, store: DeploymentStore, history: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The confirm page offers "Show the plan"; asked with no worker running, it says no worker answered
        (naming what to check), still offers the confirm form, and queues nothing."""
        monkeypatch.setattr(actions, "CONFIRM_PLAN_WAIT_SECONDS", 0.5)
        dan = logged_in(team, DAN_TOKEN)
        assert 'id="show-plan"' in dan.get(f"/apps/shop/rollback?to={SHA_OLD}").get_data(as_text=True)
        page = dan.get(f"/apps/shop/rollback?to={SHA_OLD}&plan=1").get_data(as_text=True)
        assert "No plan: no worker answered the plan of shop" in page and "hooksvc worker" in page
        assert 'id="confirm"' in page and len(everything(store)) == 3
