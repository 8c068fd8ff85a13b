"""CI events on the webhook routes: each host's documented example payload read into check reports
(GitHub `check_run`, `check_suite`, `status`; Gitea/Forgejo `status`; GitLab `Pipeline Hook`)."""

from __future__ import annotations

import pytest

from hooksvc.ci_checks import CheckReport, CheckState
from hooksvc.errors import BadRequest
from hooksvc.providers import gitea, github, gitlab
from hooksvc.providers.github import check_run_state
from hooksvc.providers.gitlab import pipeline_state
from tests.helpers.payloads import gitea_request, github_request, gitlab_request, load

SECRET = "ci-webhook-secret-0001"


class TestGithub:
    def test_check_run_completed(self) -> None:
        """A completed, successful check run is a success of its name, linked to its page on GitHub."""
        hook = github_request(load("github_check_run_completed"), SECRET, event="check_run")
        delivery = github.parse(hook.to_request())
        assert delivery.repo == "Codertocat/Hello-World"
        assert delivery.push is None
        assert delivery.checks is not None
        assert delivery.checks.sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
        assert delivery.checks.reports == (CheckReport("Octocoders-linter", CheckState.SUCCESS,
                                                       "https://github.com/Codertocat/Hello-World/runs/128620228"),)

    def test_check_run_in_progress_and_failed(self) -> None:
        """A check run not yet completed is pending; a completed one that did not pass is a failure."""
        payload = load("github_check_run_completed")
        payload["check_run"].update(status="in_progress", conclusion=None)
        running = github.parse(github_request(payload, SECRET, event="check_run").to_request())
        assert running.checks is not None and running.checks.reports[0].state is CheckState.PENDING
        payload["check_run"].update(status="completed", conclusion="timed_out")
        failed = github.parse(github_request(payload, SECRET, event="check_run").to_request())
        assert failed.checks is not None and failed.checks.reports[0].state is CheckState.FAILURE

    @pytest.mark.parametrize(("conclusion", "state"), [
        ("success", CheckState.SUCCESS), ("neutral", CheckState.SUCCESS), ("skipped", CheckState.SUCCESS),
        ("failure", CheckState.FAILURE), ("cancelled", CheckState.FAILURE), ("action_required", CheckState.FAILURE),
        ("stale", CheckState.FAILURE),
    ])
    def test_conclusions_count_as_branch_protection_counts_them(self, conclusion: str, state: CheckState) -> None:
        """success, neutral and skipped pass a required check; every other conclusion fails it."""
        assert check_run_state("completed", conclusion) is state

    def test_check_suite_asks_for_a_read_and_reports_nothing(self) -> None:
        """A check suite names no check: it asks the worker to read the commit's check runs instead."""
        hook = github_request(load("github_check_suite_completed"), SECRET, event="check_suite")
        delivery = github.parse(hook.to_request())
        assert delivery.checks is not None
        assert delivery.checks.refresh and delivery.checks.reports == ()
        assert delivery.checks.sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"

    def test_status(self) -> None:
        """A `status` event is a report of its context; a null target_url is no link."""
        delivery = github.parse(github_request(load("github_status"), SECRET, event="status").to_request())
        assert delivery.checks is not None
        assert delivery.checks.sha == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
        assert delivery.checks.reports == (CheckReport("default", CheckState.SUCCESS, ""),)

    def test_malformed_check_run_names_the_key(self) -> None:
        """A check run without a head_sha is refused, naming the key."""
        payload = load("github_check_run_completed")
        del payload["check_run"]["head_sha"]
        with pytest.raises(BadRequest, match="check_run payload: 'head_sha'"):
            github.parse(github_request(payload, SECRET, event="check_run").to_request())


class TestGitea:
    @pytest.mark.parametrize("forgejo", [False, True])
    def test_status(self, forgejo: bool) -> None:
        """Gitea's and Forgejo's `status` event is a report of its context, linked to the CI's page."""
        hook = gitea_request(load("gitea_status"), SECRET, event="status", forgejo=forgejo)
        delivery = gitea.parse(hook.to_request())
        assert delivery.repo == "gitea/webhooks"
        assert delivery.checks is not None
        assert delivery.checks.sha == "bffeb74224043ba2feb48d137756c8a9331c449a"
        assert delivery.checks.reports == (CheckReport("ci/woodpecker/push/test", CheckState.SUCCESS,
                                                       "http://localhost:8000/repos/1/pipeline/7"),)

    @pytest.mark.parametrize(("state", "expected"), [
        ("pending", CheckState.PENDING), ("error", CheckState.FAILURE), ("warning", CheckState.FAILURE),
    ])
    def test_states(self, state: str, expected: CheckState) -> None:
        """pending waits; error, failure and warning fail (a deploy waits for a check that passed)."""
        payload = load("gitea_status")
        payload["state"] = state
        delivery = gitea.parse(gitea_request(payload, SECRET, event="status").to_request())
        assert delivery.checks is not None and delivery.checks.reports[0].state is expected

    def test_unknown_state_is_refused(self) -> None:
        """A state hooksvc does not know is refused, naming the check."""
        payload = load("gitea_status")
        payload["state"] = "exploded"
        with pytest.raises(BadRequest, match="status payload: the state of check 'ci/woodpecker/push/test'"):
            gitea.parse(gitea_request(payload, SECRET, event="status").to_request())


class TestGitlab:
    def test_pipeline(self) -> None:
        """A `Pipeline Hook` is a report of the pipeline (by its name), linked to the pipeline's page."""
        hook = gitlab_request(load("gitlab_pipeline"), SECRET, event="Pipeline Hook")
        delivery = gitlab.parse(hook.to_request())
        assert delivery.repo == "gitlab-org/gitlab-test"
        assert delivery.checks is not None
        assert delivery.checks.sha == "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
        assert delivery.checks.reports == (CheckReport("Pipeline for branch: master", CheckState.SUCCESS,
                                                       "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"),)

    def test_unnamed_pipeline_is_called_pipeline(self) -> None:
        """A pipeline without a `name` (no `workflow:name`) is the check "pipeline"."""
        payload = load("gitlab_pipeline")
        del payload["object_attributes"]["name"]
        delivery = gitlab.parse(gitlab_request(payload, SECRET, event="Pipeline Hook").to_request())
        assert delivery.checks is not None and delivery.checks.reports[0].name == "pipeline"

    @pytest.mark.parametrize(("status", "state"), [
        ("running", CheckState.PENDING), ("manual", CheckState.PENDING), ("failed", CheckState.FAILURE),
        ("canceled", CheckState.FAILURE), ("skipped", CheckState.FAILURE), ("success", CheckState.SUCCESS),
    ])
    def test_statuses(self, status: str, state: CheckState) -> None:
        """Only `success` passes, as with GitLab's own "Pipelines must succeed"; a manual one waits."""
        assert pipeline_state(status) is state

    def test_pipeline_needs_its_object_kind(self) -> None:
        """A Pipeline Hook whose payload is not a pipeline is refused."""
        payload = load("gitlab_pipeline")
        payload["object_kind"] = "build"
        with pytest.raises(BadRequest, match="pipeline payload: needs object_kind 'pipeline'"):
            gitlab.parse(gitlab_request(payload, SECRET, event="Pipeline Hook").to_request())
