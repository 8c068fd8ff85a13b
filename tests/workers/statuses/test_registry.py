"""The reporting side of the host registry: one status reporter per host kind with a status API."""

from __future__ import annotations

from hooksvc.providers import HOST_KINDS
from workers.statuses import REPORTERS, bitbucket, bitbucket_server, gitea, github, gitlab, unmatched_kinds


class TestReporterRegistry:
    def test_every_kind_with_a_status_api_has_a_reporter(self) -> None:
        """The reporters cover exactly the kinds that declare a status API, each by its module's REPORTER."""
        assert sorted(REPORTERS) == sorted(name for name, kind in HOST_KINDS.items() if kind.statuses)
        assert unmatched_kinds(REPORTERS) == []
        assert REPORTERS["bitbucket"] is bitbucket.REPORTER
        assert REPORTERS["bitbucket-server"] is bitbucket_server.REPORTER
        assert REPORTERS["github"] is github.REPORTER and REPORTERS["gitlab"] is gitlab.REPORTER
        assert REPORTERS["gitea"] is REPORTERS["forgejo"] is gitea.REPORTER

    def test_a_missing_reporter_is_named(self) -> None:
        """A kind with a status API but no reporter is reported by name (what the import-time check raises)."""
        partial = {kind: reporter for kind, reporter in REPORTERS.items() if kind != "bitbucket"}
        assert unmatched_kinds(partial) == [
            "host kind 'bitbucket' declares a status API but has no reporter in workers/statuses/"]

    def test_a_reporter_for_a_kind_without_statuses_is_named(self) -> None:
        """A reporter for a kind that has no status API (or no provider) is reported too."""
        extra = {**REPORTERS, "gogs": github.REPORTER}
        assert unmatched_kinds(extra) == [
            "workers/statuses/ reports to 'gogs', which is no host kind with a status API"]
