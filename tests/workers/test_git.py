"""The app mirror against real git repositories: fetching, ref checks, releases, credentials."""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooksvc.config import AppConfig, Secret
from hooksvc.errors import GitError
from tests.helpers.git import HTTP_TOKEN, GitHttpServer, GitOrigin, git
from workers.git import GitMirror, touches

#: `mirror_for(origin, name="shop", **app_fields)`, the fixture below.
MirrorFor = Callable[..., GitMirror]


def make_app(origin: GitOrigin | str, name: str = "shop", **overrides: object) -> AppConfig:
    """An app deploying `main` from `origin`; keyword arguments replace any AppConfig field."""
    url = origin if isinstance(origin, str) else origin.url
    app = AppConfig(
        name=name, host="github", host_kind="github", repo=f"acme/{name}", clone_url=url, secret=Secret("hook-secret"),
    )
    return replace(app, **overrides)  # type: ignore[arg-type]


class Recorder:
    """Collects log lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def log() -> Recorder:
    return Recorder()


@pytest.fixture
def mirror_for(state_dir: Path, log: Recorder) -> MirrorFor:
    """`mirror_for(origin, **app_fields)`: a GitMirror for an app built by `make_app`."""

    def build(origin: GitOrigin | str, name: str = "shop", **overrides: object) -> GitMirror:
        return GitMirror(make_app(origin, name, **overrides), state_dir, log)

    return build


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under `root`, by relative path, with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def set_mtime(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


class TestFetch:
    def test_first_fetch_creates_a_bare_mirror_of_branches_and_tags(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """The first fetch clones into mirrors/<app>.git, a bare repository holding every branch and tag."""
        first = git_origin.commit("first", {"README": "hello"})
        other = git_origin.commit("feature work", {"f.txt": "f"}, branch="feature")
        git_origin.tag("v1.0", first)
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert mirror.mirror_dir.name == "shop.git"
        assert git("--git-dir", str(mirror.mirror_dir), "rev-parse", "--is-bare-repository") == "true"
        assert mirror.resolve("main") == first
        assert mirror.resolve("feature") == other
        assert mirror.resolve("v1.0") == first

    def test_incremental_fetch_sees_a_new_commit(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """A second fetch into the existing mirror brings the commit pushed since the first one."""
        git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        inode = mirror.mirror_dir.stat().st_ino
        second = git_origin.commit("second", {"a": "2"})
        assert not mirror.has_commit(second)
        mirror.fetch()
        assert mirror.has_commit(second)
        assert mirror.resolve("main") == second
        assert mirror.mirror_dir.stat().st_ino == inode

    def test_fetch_prunes_deleted_refs_and_follows_forced_updates(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """Deleted branches and tags vanish from the mirror; a force-pushed branch and a moved tag follow the origin."""
        first = git_origin.commit("first", {"a": "1"})
        second = git_origin.commit("second", {"a": "2"})
        git_origin.commit("topic", {"t": "t"}, branch="topic")
        git_origin.tag("old", first)
        git_origin.tag("moving", second)
        mirror = mirror_for(git_origin)
        mirror.fetch()
        git_origin.delete_branch("topic")
        git_origin.delete_tag("old")
        git_origin.reset("main", first)
        git_origin.tag("moving", first, force=True)
        mirror.fetch()
        assert mirror.resolve("main") == first
        assert mirror.resolve("moving") == first
        for gone in ("topic", "old"):
            with pytest.raises(GitError, match=gone):
                mirror.resolve(gone)

    def test_only_branches_and_tags_are_mirrored(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """Refs such as GitHub's refs/pull/* are not copied: they are never deployed and can be numerous."""
        sha = git_origin.commit("first", {"a": "1"})
        git("--git-dir", str(git_origin.path), "update-ref", "refs/pull/1/head", sha)
        mirror = mirror_for(git_origin)
        mirror.fetch()
        refs = git("--git-dir", str(mirror.mirror_dir), "for-each-ref", "--format=%(refname)").splitlines()
        assert refs == ["refs/heads/main"]

    def test_unreachable_clone_url_raises_an_actionable_error(
        self, tmp_path: Path, mirror_for: MirrorFor
    ) -> None:
        """A clone URL that does not answer fails naming the app, the URL and what to check, and leaves no mirror."""
        missing = str(tmp_path / "nowhere.git")
        mirror = mirror_for(missing)
        with pytest.raises(GitError) as info:
            mirror.fetch()
        message = str(info.value)
        assert "'shop'" in message and missing in message and "clone_url" in message
        assert not mirror.mirror_dir.exists()
        assert list(mirror.scratch_dir.iterdir()) == []

    def test_refused_connection_names_the_url(self, mirror_for: MirrorFor) -> None:
        """An HTTP origin with nothing listening fails quickly with the URL in the message."""
        mirror = mirror_for("http://127.0.0.1:9/acme/shop.git")
        with pytest.raises(GitError, match=r"127\.0\.0\.1:9/acme/shop\.git"):
            mirror.fetch()

    def test_interrupted_first_clone_does_not_break_the_next_fetch(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """A half-made mirror left in scratch by a killed worker is discarded and the clone starts over."""
        sha = git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        leftover = mirror.scratch_dir / "mirror-killed"
        (leftover / "objects").mkdir(parents=True)
        (leftover / "HEAD").write_text("ref: refs/heads/main\n")
        mirror.fetch()
        assert mirror.resolve("main") == sha
        assert not leftover.exists()

    def test_a_directory_that_is_not_a_mirror_is_replaced(
        self, git_origin: GitOrigin, mirror_for: MirrorFor, log: Recorder
    ) -> None:
        """An empty or foreign directory where the mirror belongs is set aside and the mirror cloned afresh."""
        sha = git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.mirror_dir.mkdir(parents=True)
        (mirror.mirror_dir / "stray").write_text("x")
        mirror.fetch()
        assert mirror.resolve("main") == sha
        assert "was not a git mirror" in log.text

    def test_two_apps_fetch_in_parallel(
        self, make_git_origin: Callable[[str], GitOrigin], state_dir: Path, log: Recorder
    ) -> None:
        """Mirrors of different apps are independent, so two apps can fetch at the same time."""
        origins = {name: make_git_origin(name) for name in ("shop", "blog")}
        heads = {name: o.commit(f"{name} first", {"n": name}) for name, o in origins.items()}
        mirrors = {name: GitMirror(make_app(o, name), state_dir, log) for name, o in origins.items()}
        errors: list[BaseException] = []

        def fetch(m: GitMirror) -> None:
            try:
                m.fetch()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread's assertion
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(m,)) for m in mirrors.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert {name: m.resolve("main") for name, m in mirrors.items()} == heads

    def test_git_output_goes_to_the_log(
        self, git_origin: GitOrigin, mirror_for: MirrorFor, log: Recorder
    ) -> None:
        """Each line git prints while fetching reaches the log callback."""
        git_origin.commit("first", {"a": "1"})
        mirror_for(git_origin).fetch()
        assert any("[new branch]" in line and "main" in line for line in log.lines)


class TestResolve:
    def test_names_full_refs_and_shas_resolve_to_full_shas(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """A branch name, a full ref, an abbreviated or full sha all give the full commit sha."""
        sha = git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert mirror.resolve("main") == sha
        assert mirror.resolve("refs/heads/main") == sha
        assert mirror.resolve(sha[:10]) == sha
        assert mirror.resolve(sha.upper()) == sha

    def test_a_sha_with_a_trailing_line_feed_is_refused_before_git_sees_it(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """`<sha>\\n` is no name git is asked about (Python's `$` took it for a sha)."""
        sha = git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        with pytest.raises(GitError, match="is not a valid branch or tag name"):
            mirror.resolve(sha + "\n")
        assert not mirror.has_commit(sha[:10] + "\n")

    def test_annotated_tag_resolves_to_the_commit(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """An annotated tag resolves to the commit it tags, not to the tag object."""
        sha = git_origin.commit("first", {"a": "1"})
        git_origin.tag("v1", sha, message="release 1")
        mirror = mirror_for(git_origin, branch=None, tags="v*")
        mirror.fetch()
        assert mirror.resolve("v1") == sha
        assert mirror.resolve("refs/tags/v1") == sha

    def test_branch_wins_over_a_same_named_tag_for_a_branch_app(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """When a branch and a tag share a name, a branch app gets the branch and a tag app the tag."""
        tagged = git_origin.commit("first", {"a": "1"})
        git_origin.tag("prod", tagged)
        head = git_origin.commit("prod branch", {"b": "2"}, branch="prod")
        by_branch = mirror_for(git_origin, branch="prod")
        by_branch.fetch()
        by_tag = mirror_for(git_origin, name="shop-tags", branch=None, tags="prod")
        by_tag.fetch()
        assert by_branch.resolve("prod") == head
        assert by_tag.resolve("prod") == tagged

    def test_unknown_ref_raises_with_the_refs_the_app_deploys(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """An unknown name fails with a GitError listing the refs the app could deploy instead."""
        git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        with pytest.raises(GitError, match=r"'mian'.*heads/main"):
            mirror.resolve("mian")

    @pytest.mark.parametrize("ref", ["main~1", "main^", "-all", "a..b", "@{-1}", "main:README", ""])
    def test_revision_expressions_are_not_refs(
        self, git_origin: GitOrigin, mirror_for: MirrorFor, ref: str
    ) -> None:
        """Only ref names are resolved: revision syntax such as `main~1` or an option-like `-all` is refused."""
        git_origin.commit("first", {"a": "1"})
        git_origin.commit("second", {"a": "2"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        with pytest.raises(GitError, match="not a valid branch or tag name"):
            mirror.resolve(ref)

    def test_resolving_before_any_fetch_says_to_fetch(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """Asking a mirror that was never fetched fails with a message saying so."""
        with pytest.raises(GitError, match="no mirror yet"):
            mirror_for(git_origin).resolve("main")


class TestRefChecks:
    def test_an_ancestor_of_the_branch_head_is_on_the_branch(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """The head of main and every commit below it are on refs/heads/main."""
        first = git_origin.commit("first", {"a": "1"})
        head = git_origin.commit("second", {"a": "2"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert mirror.is_on_ref(head) == "refs/heads/main"
        assert mirror.is_on_ref(first[:8]) == "refs/heads/main"

    def test_a_commit_only_on_another_branch_is_refused(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """A commit that exists only on a feature branch is not on the configured branch."""
        git_origin.commit("first", {"a": "1"})
        feature = git_origin.commit("feature", {"f": "1"}, branch="feature")
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert mirror.has_commit(feature)
        assert mirror.is_on_ref(feature) is None

    def test_a_branch_glob_accepts_any_matching_branch(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """With `branch = "release/*"`, a commit on release/2 is accepted and one on main alone is not."""
        base = git_origin.commit("base", {"a": "1"})
        r2 = git_origin.commit("release 2", {"a": "2"}, branch="release/2")
        git_origin.commit("release 3", {"a": "3"}, branch="release/3", start=base)
        only_main = git_origin.commit("main only", {"m": "1"})
        mirror = mirror_for(git_origin, branch="release/*")
        mirror.fetch()
        assert mirror.is_on_ref(r2) == "refs/heads/release/2"
        assert mirror.is_on_ref(base) == "refs/heads/release/2"
        assert mirror.is_on_ref(only_main) is None

    def test_tag_glob_accepts_only_tagged_commits(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """With `tags = "v*"`, only commits a matching tag (lightweight or annotated) points at are accepted."""
        first = git_origin.commit("first", {"a": "1"})
        second = git_origin.commit("second", {"a": "2"})
        third = git_origin.commit("third", {"a": "3"})
        git_origin.tag("v1.0", first)
        git_origin.tag("v2.0", second, message="release 2.0")
        git_origin.tag("nightly", third)
        mirror = mirror_for(git_origin, branch=None, tags="v*")
        mirror.fetch()
        assert mirror.is_on_ref(first) == "refs/tags/v1.0"
        assert mirror.is_on_ref(second) == "refs/tags/v2.0"
        assert mirror.is_on_ref(third) is None

    def test_after_a_force_push_the_dropped_commit_is_no_longer_on_the_branch(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """A commit removed from main by a forced reset is refused after the next fetch."""
        first = git_origin.commit("first", {"a": "1"})
        dropped = git_origin.commit("dropped", {"a": "2"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert mirror.is_on_ref(dropped) == "refs/heads/main"
        git_origin.reset("main", first)
        mirror.fetch()
        assert mirror.is_on_ref(dropped) is None

    def test_an_unknown_sha_raises(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """A sha that is not in the mirror is an error, not a silent refusal."""
        git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert not mirror.has_commit("0123456789abcdef0123456789abcdef01234567")
        assert not mirror.has_commit("--all")
        with pytest.raises(GitError, match="not in the mirror of app 'shop'"):
            mirror.is_on_ref("0123456789abcdef0123456789abcdef01234567")


class TestAncestry:
    def test_ancestor_equal_and_descendant(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """An older commit is an ancestor of a newer one and of itself; a newer one is not an ancestor."""
        old = git_origin.commit("old", {"a": "1"})
        new = git_origin.commit("new", {"a": "2"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert mirror.is_ancestor(old, new)
        assert mirror.is_ancestor(new, new)
        assert not mirror.is_ancestor(new, old)

    def test_stale_push_detection_across_a_force_push(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """After a forced reset and a new commit, the new head is unrelated to the commit deployed before."""
        base = git_origin.commit("base", {"a": "1"})
        deployed = git_origin.commit("deployed", {"a": "2"})
        git_origin.reset("main", base)
        rewritten = git_origin.commit("rewritten", {"a": "3"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert mirror.has_commit(deployed) is False  # never fetched: the origin dropped it before
        assert mirror.is_ancestor(base, rewritten)
        assert not mirror.is_ancestor(rewritten, deployed)

    def test_a_dropped_but_fetched_commit_is_not_an_ancestor_of_the_new_head(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """A fetched commit that a force-push removed stays in the mirror, unrelated to the new head."""
        base = git_origin.commit("base", {"a": "1"})
        deployed = git_origin.commit("deployed", {"a": "2"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        git_origin.reset("main", base)
        rewritten = git_origin.commit("rewritten", {"a": "3"})
        mirror.fetch()
        assert mirror.has_commit(deployed)
        assert not mirror.is_ancestor(rewritten, deployed)
        assert not mirror.is_ancestor(deployed, rewritten)

    def test_unknown_commits_are_never_ancestors(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """A sha missing from the mirror gives False, so no push is skipped as stale on missing evidence."""
        sha = git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        unknown = "f" * 40
        assert not mirror.is_ancestor(sha, unknown)
        assert not mirror.is_ancestor(unknown, sha)


#: Path segments without glob metacharacters.
SEGMENTS = st.text(alphabet="abcxyz019._-", min_size=1, max_size=6).filter(lambda t: t not in (".", ".."))


class TestMonorepoPaths:
    def test_changed_paths_lists_added_modified_deleted_and_both_sides_of_a_rename(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """The diff between two commits names every path that differs, including a rename's old and new name."""
        a = git_origin.commit("a", {"keep": "k", "edit": "1", "gone": "g", "old/name.txt": "same content\n" * 20})
        b = git_origin.commit(
            "b", {"edit": "2", "gone": None, "new": "n", "old/name.txt": None, "moved/name.txt": "same content\n" * 20}
        )
        mirror = mirror_for(git_origin)
        mirror.fetch()
        assert sorted(mirror.changed_paths(a, b)) == ["edit", "gone", "moved/name.txt", "new", "old/name.txt"]
        assert mirror.changed_paths(a, a) == []

    def test_changed_paths_with_an_unknown_sha_raises(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """No diff can be computed against a commit the mirror does not have."""
        sha = git_origin.commit("a", {"x": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        with pytest.raises(GitError, match="not in the mirror"):
            mirror.changed_paths("e" * 40, sha)

    def test_a_push_is_tested_against_the_apps_globs(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """A change under services/shop touches `services/shop/**`; one under services/blog does not."""
        base = git_origin.commit("base", {"services/shop/app.py": "1", "services/blog/app.py": "1"})
        blog = git_origin.commit("blog", {"services/blog/app.py": "2"})
        shop = git_origin.commit("shop", {"services/shop/deep/er/x.py": "2"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        globs = ["services/shop/**", "libs/common/**"]
        assert not touches(mirror.changed_paths(base, blog), globs)
        assert touches(mirror.changed_paths(blog, shop), globs)
        assert touches(mirror.changed_paths(base, shop), globs)

    @pytest.mark.parametrize(
        ("path", "glob", "expected"),
        [
            ("services/shop/app.py", "services/shop/**", True),
            ("services/shop/a/b/c.py", "services/shop/**", True),
            ("services/shopping/app.py", "services/shop/**", False),
            ("services/shop/app.py", "services/shop", True),
            ("services/shop/app.py", "services/shop/", True),
            ("services/shop/app.py", "services/*/app.py", True),
            ("services/shop/sub/app.py", "services/*/app.py", False),
            ("services/shop/sub/app.py", "services/**/app.py", True),
            ("services/app.py", "services/**/app.py", True),
            ("Dockerfile", "**/Dockerfile", True),
            ("a/b/Dockerfile", "**/Dockerfile", True),
            ("a/b/Dockerfile.dev", "**/Dockerfile", False),
            ("docs/index.md", "*.md", False),
            ("README.md", "*.md", True),
            ("docs/v1.md", "docs/v?.md", True),
            ("docs/v10.md", "docs/v?.md", False),
            ("docs/a.md", "docs/[ab].md", True),
            ("docs/c.md", "docs/[!ab].md", True),
            ("docs/a.md", "docs/[!ab].md", False),
            ("x/y", "**", True),
            ("compose+prod.yml", "compose+prod.yml", True),
            ("composeeprod.yml", "compose+prod.yml", False),
        ],
    )
    def test_glob_semantics(self, path: str, glob: str, expected: bool) -> None:
        """`**` spans directories, `*` and `?` stay within one, a directory covers its contents, the rest is literal."""
        assert touches([path], [glob]) is expected

    @given(st.lists(SEGMENTS, min_size=1, max_size=5), st.integers(min_value=0, max_value=4))
    def test_a_directory_glob_covers_everything_below_it(self, segments: list[str], depth: int) -> None:
        """For any path, `<any ancestor directory>/**` and the path itself as a glob both match it."""
        path = "/".join(segments)
        directory = "/".join(segments[: min(depth, len(segments) - 1)])
        assert touches([path], [path])
        assert touches([path], [f"{directory}/**" if directory else "**"])
        assert not touches([path], [f"{path}x/**"])

    def test_no_paths_or_no_globs_touch_nothing(self) -> None:
        """An empty diff touches nothing, and neither does an empty glob list."""
        assert not touches([], ["**"])
        assert not touches(["a"], [])


class TestReleases:
    def test_checkout_is_the_exact_commit_not_the_branch_head(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """Checking out an older sha gives that commit's files, whatever main holds now, and no .git."""
        old = git_origin.commit("old", {"app.py": "version = 1\n", "conf/a.yml": "a: 1\n"})
        git_origin.commit("new", {"app.py": "version = 2\n", "conf/a.yml": None, "conf/b.yml": "b: 2\n"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        release = mirror.checkout_release(old[:12])
        assert release == mirror.releases_dir / old
        assert release.parent.name == "shop" and release.parent.parent.name == "releases"
        assert files_under(release) == {"app.py": b"version = 1\n", "conf/a.yml": b"a: 1\n"}
        assert not (release / ".git").exists()

    def test_a_release_is_readable_like_a_git_checkout(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """The release directory is not private to the worker: docker and containers may read it."""
        sha = git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        mode = stat.S_IMODE(mirror.checkout_release(sha).stat().st_mode)
        assert mode & 0o055 == 0o055

    def test_an_existing_release_is_reused_and_touched(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """A second checkout of the same sha returns the same directory untouched in content and with a fresh mtime."""
        sha = git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        release = mirror.checkout_release(sha)
        (release / "marker").write_text("still here")
        set_mtime(release, 3600)
        assert mirror.checkout_release(sha) == release
        assert (release / "marker").read_text() == "still here"
        assert time.time() - release.stat().st_mtime < 60

    def test_a_crash_mid_checkout_does_not_break_the_next_one(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """A half-written checkout left in scratch by a killed worker is discarded and never served as a release."""
        sha = git_origin.commit("first", {"a": "1", "b": "2"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        leftover = mirror.scratch_dir / f"release-{sha[:12]}-killed"
        leftover.mkdir(parents=True)
        (leftover / "a").write_text("half")
        release = mirror.checkout_release(sha)
        assert files_under(release) == {"a": b"1", "b": b"2"}
        assert not leftover.exists()

    def test_an_unknown_sha_leaves_nothing_behind(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """Checking out a sha the mirror lacks fails with a GitError and creates no release directory."""
        git_origin.commit("first", {"a": "1"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        with pytest.raises(GitError, match="not in the mirror"):
            mirror.checkout_release("a" * 40)
        assert not mirror.releases_dir.exists() or list(mirror.releases_dir.iterdir()) == []

    def test_prune_keeps_the_newest_and_the_protected(
        self, git_origin: GitOrigin, mirror_for: MirrorFor
    ) -> None:
        """Pruning keeps the `keep` most recently used releases plus protected ones and deletes the rest."""
        shas = [git_origin.commit(f"c{i}", {"n": str(i)}) for i in range(5)]
        mirror = mirror_for(git_origin)
        mirror.fetch()
        for age, sha in zip(range(50, 0, -10), shas, strict=True):  # shas[0] oldest, shas[4] newest
            set_mtime(mirror.checkout_release(sha), age)
        mirror.checkout_release(shas[1])  # reuse makes it the newest
        removed = mirror.prune_releases(keep=2, protect={shas[0]})
        assert removed == [shas[2], shas[3]]
        assert sorted(p.name for p in mirror.releases_dir.iterdir()) == sorted([shas[0], shas[1], shas[4]])
        assert list(mirror.scratch_dir.iterdir()) == []

    def test_prune_without_releases_removes_nothing(self, git_origin: GitOrigin, mirror_for: MirrorFor) -> None:
        """Pruning an app that never checked anything out is a no-op."""
        assert mirror_for(git_origin).prune_releases(keep=1, protect=()) == []


class TestSubmodules:
    def test_submodules_are_checked_out_at_the_recorded_commit(
        self,
        git_origin: GitOrigin,
        make_git_origin: Callable[[str], GitOrigin],
        mirror_for: MirrorFor,
    ) -> None:
        """A release holds each submodule, nested ones too, at the commit the superproject records."""
        leaf = make_git_origin("leaf")
        leaf.commit("leaf", {"leaf.txt": "leaf"})
        lib = make_git_origin("lib")
        pinned = lib.commit("lib v1", {"lib.txt": "v1"})
        lib.add_submodule("vendor/leaf", leaf)
        git_origin.commit("app", {"app.py": "x"})
        sha = git_origin.add_submodule("libs/lib", lib, sha=pinned)
        lib.commit("lib v2", {"lib.txt": "v2"})
        mirror = mirror_for(git_origin)
        mirror.fetch()
        release = mirror.checkout_release(sha)
        assert (release / "libs/lib/lib.txt").read_text() == "v1"
        assert not (release / "libs/lib/.git").exists()
        nested = lib.add_submodule("vendor/leaf", leaf, message="touch")
        sha2 = git_origin.add_submodule("libs/lib", lib, sha=nested)
        mirror.fetch()
        release2 = mirror.checkout_release(sha2)
        assert (release2 / "libs/lib/vendor/leaf/leaf.txt").read_text() == "leaf"
        assert [p for p in release2.rglob(".git")] == []

    def test_a_missing_submodule_fails_the_checkout_cleanly(
        self,
        git_origin: GitOrigin,
        make_git_origin: Callable[[str], GitOrigin],
        mirror_for: MirrorFor,
        tmp_path: Path,
    ) -> None:
        """A submodule that cannot be fetched fails with a GitError about submodules and leaves no release."""
        lib = make_git_origin("lib")
        lib.commit("lib", {"lib.txt": "v1"})
        sha = git_origin.add_submodule("libs/lib", lib, url=str(tmp_path / "missing.git"))
        mirror = mirror_for(git_origin)
        mirror.fetch()
        with pytest.raises(GitError, match="submodules"):
            mirror.checkout_release(sha)
        assert not mirror.release_dir(sha).exists()
        assert list(mirror.scratch_dir.iterdir()) == []


class TestSubmoduleConfinement:
    """A pusher's `.gitmodules` cannot bring another app's source, or the worker's disk, into a release."""

    def mirror_with_others(self, origin: GitOrigin, state_dir: Path, log: Recorder,
                           **others: GitOrigin) -> GitMirror:
        return GitMirror(make_app(origin), state_dir, log,
                         other_origins={"shop": origin.url, **{n: o.url for n, o in others.items()}})

    def test_a_local_submodule_may_not_be_another_apps_origin(
        self, git_origin: GitOrigin, make_git_origin: Callable[[str], GitOrigin], state_dir: Path, log: Recorder,
        tmp_path: Path,
    ) -> None:
        """A local app's submodule naming another app's local origin (relatively, or through a symlink) is
        refused before git clones it; no release and none of the other app's files appear."""
        other = make_git_origin("billing")
        other.commit("private", {"private.txt": "billing source"})
        git_origin.commit("app", {"app.py": "x"})
        relative = git_origin.add_submodule("vendor/billing", other, url="../billing.git")
        (tmp_path / "alias.git").symlink_to(other.path)
        aliased = git_origin.add_submodule("vendor/alias", other, url=str(tmp_path / "alias.git"))
        mirror = self.mirror_with_others(git_origin, state_dir, log, billing=other)
        mirror.fetch()
        for sha in (relative, aliased):
            with pytest.raises(GitError, match="the origin of app 'billing'"):
                mirror.checkout_release(sha)
            assert not mirror.release_dir(sha).exists()
        assert "billing source" not in log.text
        assert not any(p.name == "private.txt" for p in state_dir.rglob("*"))

    def test_a_local_submodule_may_not_point_into_state_dir(
        self, git_origin: GitOrigin, git_http_server: GitHttpServer, state_dir: Path, log: Recorder,
        mirror_for: MirrorFor,
    ) -> None:
        """The worker's mirror of an app cloned from a git host is refused as a submodule of a local app."""
        hosted = git_http_server.origin("hosted")
        hosted.commit("hosted", {"hosted.txt": "hosted source"})
        mirror_for(hosted, name="hosted", clone_token=Secret(HTTP_TOKEN)).fetch()
        mirrored = GitOrigin(state_dir / "mirrors" / "hosted.git")
        git_origin.commit("app", {"app.py": "x"})
        sha = git_origin.add_submodule("vendor/hosted", mirrored)
        mirror = self.mirror_with_others(git_origin, state_dir, log)
        mirror.fetch()
        with pytest.raises(GitError, match="inside the worker's state_dir"):
            mirror.checkout_release(sha)

    def test_a_nested_submodule_is_checked_too(
        self, git_origin: GitOrigin, make_git_origin: Callable[[str], GitOrigin], state_dir: Path, log: Recorder,
    ) -> None:
        """An allowed local submodule whose own `.gitmodules` names another app's origin is refused."""
        other = make_git_origin("billing")
        other.commit("private", {"private.txt": "billing source"})
        lib = make_git_origin("lib")
        lib.commit("lib", {"lib.txt": "lib"})
        lib.add_submodule("deep", other)
        git_origin.commit("app", {"app.py": "x"})
        sha = git_origin.add_submodule("libs/lib", lib)
        mirror = self.mirror_with_others(git_origin, state_dir, log, billing=other)
        mirror.fetch()
        with pytest.raises(GitError, match="submodule 'deep'.*the origin of app 'billing'"):
            mirror.checkout_release(sha)

    @pytest.mark.parametrize("submodule_url", ["ssh://git@127.0.0.1:9/lib.git", "FILE"])
    def test_a_remote_origins_submodules_use_its_transport_only(
        self, submodule_url: str, git_http_server: GitHttpServer, make_git_origin: Callable[[str], GitOrigin],
        mirror_for: MirrorFor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An HTTP(S) app's submodule over ssh (the worker's keys and agent) or a local path is refused by git
        before any ssh starts or any local file is read."""
        fake_ssh = install_fake_ssh(tmp_path / "bin", monkeypatch)
        local = make_git_origin("local-lib")
        local.commit("lib", {"lib.txt": "worker disk"})
        app = git_http_server.origin("app")
        app.commit("app", {"app.py": "x"})
        sha = app.add_submodule("lib", local, url=str(local.path) if submodule_url == "FILE" else submodule_url)
        mirror = mirror_for(app, clone_token=Secret(HTTP_TOKEN))
        mirror.fetch()
        with pytest.raises(GitError, match=r"transport '(ssh|file)' not allowed.*over its origin's transport \(http\)"):
            mirror.checkout_release(sha)
        assert not Path(f"{fake_ssh}.argv").exists()


def grep_tree(root: Path, needles: list[bytes]) -> list[str]:
    """Files under `root` (names or contents) that contain any needle."""
    hits = []
    for path in root.rglob("*"):
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        if any(n in data or n in str(path).encode() for n in needles):
            hits.append(str(path))
    return hits


class TestHttpsToken:
    @staticmethod
    def needles(username: str = "x-access-token") -> list[bytes]:
        """The token and the forms it travels in: raw and inside the basic-auth header."""
        return [HTTP_TOKEN.encode(), base64.b64encode(f"{username}:{HTTP_TOKEN}".encode())]

    def test_clone_with_the_token_works_and_leaves_no_trace_of_it(
        self, git_http_server: GitHttpServer, mirror_for: MirrorFor, log: Recorder, state_dir: Path
    ) -> None:
        """With the token a private origin is fetched and checked out, and the token is in no log line and no file."""
        origin = git_http_server.origin("private")
        sha = origin.commit("first", {"secret.txt": "not the token"})
        mirror = mirror_for(origin, clone_token=Secret(HTTP_TOKEN))
        mirror.fetch()
        origin.commit("second", {"more": "x"})
        mirror.fetch()
        release = mirror.checkout_release(sha)
        assert (release / "secret.txt").read_text() == "not the token"
        assert all(ok for _, _, ok, _ in git_http_server.requests)
        assert {user for *_, user in git_http_server.requests} == {"x-access-token"}
        assert log.lines
        assert not any(n.decode() in log.text for n in self.needles())
        assert grep_tree(state_dir, self.needles()) == []

    def test_without_the_token_the_fetch_fails_and_says_why(
        self, git_http_server: GitHttpServer, mirror_for: MirrorFor
    ) -> None:
        """A private origin without a configured token fails with a GitError that asks for token_env."""
        origin = git_http_server.origin("private")
        origin.commit("first", {"a": "1"})
        mirror = mirror_for(origin)
        with pytest.raises(GitError, match="token_env") as info:
            mirror.fetch()
        assert origin.url in str(info.value)
        assert not mirror.mirror_dir.exists()

    def test_a_wrong_token_fails_and_is_not_disclosed(
        self, git_http_server: GitHttpServer, mirror_for: MirrorFor, log: Recorder, state_dir: Path
    ) -> None:
        """A rejected token fails naming the credentials, and neither message nor log shows the token."""
        wrong = "wrong-token-Zx81Qa"
        origin = git_http_server.origin("private")
        origin.commit("first", {"a": "1"})
        mirror = mirror_for(origin, clone_token=Secret(wrong))
        with pytest.raises(GitError, match="rejected the app's credentials") as info:
            mirror.fetch()
        assert wrong not in str(info.value)
        assert wrong not in log.text
        assert grep_tree(state_dir, [wrong.encode()]) == []

    @pytest.mark.parametrize(("kind", "user"), [("bitbucket", "x-token-auth"), ("gitlab", "oauth2"),
                                                ("gogs", "oauth2"), ("bitbucket-server", "oauth2")])
    def test_the_token_goes_with_the_host_kinds_clone_user(
        self, git_http_server: GitHttpServer, mirror_for: MirrorFor, kind: str, user: str
    ) -> None:
        """Without a user name in clone_url, the token is sent with the user name its host kind declares."""
        origin = git_http_server.origin("private")
        origin.commit("first", {"a": "1"})
        mirror_for(origin, clone_token=Secret(HTTP_TOKEN), host_kind=kind).fetch()
        assert {name for *_, name in git_http_server.requests} == {user}

    def test_a_user_name_in_the_url_is_sent_with_the_token(
        self, git_http_server: GitHttpServer, mirror_for: MirrorFor, state_dir: Path
    ) -> None:
        """A user name in clone_url (a GitLab deploy token's, say) is used with the token, and the mirror works."""
        origin = git_http_server.origin("private")
        sha = origin.commit("first", {"a": "1"})
        url = origin.url.replace("http://", "http://deploy-user@")
        mirror = mirror_for(url, clone_token=Secret(HTTP_TOKEN), host_kind="gitlab")
        mirror.fetch()
        assert mirror.resolve("main") == sha
        assert {user for *_, user in git_http_server.requests} == {"deploy-user"}
        assert grep_tree(state_dir, self.needles("deploy-user")) == []

    def test_submodules_on_the_same_host_use_the_token(
        self,
        git_http_server: GitHttpServer,
        mirror_for: MirrorFor,
        log: Recorder,
        state_dir: Path,
    ) -> None:
        """Private submodules on the app's host, by relative and by absolute URL, are fetched with the app's token."""
        lib = git_http_server.origin("lib")
        lib.commit("lib", {"lib.txt": "private lib"})
        tools = git_http_server.origin("tools")
        tools.commit("tools", {"tool.sh": "echo"})
        app = git_http_server.origin("app")
        app.commit("app", {"app.py": "x"})
        app.add_submodule("libs/lib", lib, url="../lib.git")
        sha = app.add_submodule("tools", tools)
        mirror = mirror_for(app, clone_token=Secret(HTTP_TOKEN))
        mirror.fetch()
        release = mirror.checkout_release(sha)
        assert (release / "libs/lib/lib.txt").read_text() == "private lib"
        assert (release / "tools/tool.sh").read_text() == "echo"
        assert any(path.startswith("/lib.git/") for _, path, _, _ in git_http_server.requests)
        assert all(ok for _, _, ok, _ in git_http_server.requests)
        assert not any(n.decode() in log.text for n in self.needles())
        assert grep_tree(state_dir, self.needles()) == []

    def test_the_token_is_not_sent_to_another_host(
        self, git_http_server: GitHttpServer, tmp_path: Path, mirror_for: MirrorFor
    ) -> None:
        """A submodule on a different host (here another port) does not receive the app's token."""
        with GitHttpServer(tmp_path / "other-host", token=None) as other:
            lib = other.origin("lib")
            lib.commit("lib", {"lib.txt": "public"})
            app = git_http_server.origin("app")
            app.commit("app", {"app.py": "x"})
            sha = app.add_submodule("lib", lib)
            mirror = mirror_for(app, clone_token=Secret(HTTP_TOKEN))
            mirror.fetch()
            release = mirror.checkout_release(sha)
            assert (release / "lib/lib.txt").read_text() == "public"
            assert other.requests and not any(user for *_, user in other.requests)


FAKE_SSH = """#!/bin/sh
# Stands in for ssh: records its argv and environment next to itself (git passes ssh only the
# environment it got), then runs the remote command (git-upload-pack) locally.
printf '%s\\n' "$@" > "$0.argv"
env > "$0.env"
for last; do :; done
exec sh -c "$last"
"""


def install_fake_ssh(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put FAKE_SSH first on PATH as `ssh`; returns its path (`<path>.argv`, `<path>.env` after a run)."""
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return fake


class TestSshKey:
    def test_the_deploy_key_is_passed_to_ssh(
        self,
        git_origin: GitOrigin,
        tmp_path: Path,
        state_dir: Path,
        log: Recorder,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An ssh:// origin is fetched with `ssh -i <key> -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new`."""
        sha = git_origin.commit("first", {"a": "1"})
        fake = install_fake_ssh(tmp_path / "bin", monkeypatch)
        key = tmp_path / "keys dir" / "deploy key"
        key.parent.mkdir()
        key.write_text("not a real key")
        app = make_app(f"ssh://git@127.0.0.1{git_origin.path}", ssh_key_file=key)
        mirror = GitMirror(app, state_dir, log)
        mirror.fetch()
        assert mirror.resolve("main") == sha
        argv = Path(f"{fake}.argv").read_text().splitlines()
        assert argv[argv.index("-i") + 1] == str(key)
        options = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
        assert {"IdentitiesOnly=yes", "StrictHostKeyChecking=accept-new", "BatchMode=yes"} <= options
        assert "git@127.0.0.1" in argv


class TestEnvironment:
    def test_git_and_ssh_see_the_deploy_key_but_no_other_secret_of_the_worker(
        self,
        git_origin: GitOrigin,
        tmp_path: Path,
        state_dir: Path,
        log: Recorder,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A fetch runs git (and git runs ssh) with the allow-listed environment: the app's own
        GIT_SSH_COMMAND and the worker's proxy settings, never another app's secret, the API tokens,
        a git host token, REDIS_URL, HOOKSVC_CONFIG or the worker's own GIT_CONFIG_* entries."""
        leaks = {
            "OTHER_APP_SECRET": "other-app-webhook-secret",
            "HOOKSVC_API_TOKENS": "operator-token-1,operator-token-2",
            "GITHUB_TOKEN": "ghp_gitHostTokenOfTheWorker0000000000",
            "REDIS_URL": "redis://:redis-password@127.0.0.1:6392/0",
            "HOOKSVC_CONFIG": "/etc/hooksvc/secret-config.toml",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.https://example.invalid/.extraHeader",
            "GIT_CONFIG_VALUE_0": "Authorization: Bearer worker-wide-git-token",
        }
        for name, value in leaks.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        sha = git_origin.commit("first", {"a": "1"})
        fake = install_fake_ssh(tmp_path / "bin", monkeypatch)
        key = tmp_path / "deploy_key"
        key.write_text("not a real key")
        mirror = GitMirror(make_app(f"ssh://git@127.0.0.1{git_origin.path}", ssh_key_file=key), state_dir, log)
        mirror.fetch()
        assert mirror.resolve("main") == sha
        seen = Path(f"{fake}.env").read_text()
        names = {line.split("=", 1)[0] for line in seen.splitlines() if "=" in line}
        assert "GIT_SSH_COMMAND" in names and "PATH" in names and "https_proxy" in names
        assert not names & set(leaks)
        for name, value in leaks.items():
            assert len(value) < 8 or value not in seen, f"the value of {name} reached git"
