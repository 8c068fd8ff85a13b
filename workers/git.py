"""The one place that talks to git: a bare mirror per app, ref checks, and release checkouts.

Layout under the worker's `state_dir`:

    mirrors/<app>.git            bare mirror of the app's branches and tags, fetched incrementally
    releases/<app>/<sha>/        the plain tree of one commit (no `.git`), submodules included
    tmp/<app>/                   scratch space: half-made mirrors and checkouts, releases being deleted

Everything that appears under `mirrors/` or `releases/` got there by one `rename`, so a worker that
dies half-way leaves only scratch behind, never a half mirror or a half release; the next operation
of the same kind on that app clears it. That relies on the per-app deploy lock (`workers/locks.py`):
two checkouts (or two first clones) of one app never run at the same time. Different apps use
disjoint directories and may run in parallel.

Networked commands (fetch, submodule clones) run through `workers.process.run` so their output
reaches the deployment log line by line, redacted; read-only questions to the mirror use GitPython,
which keeps stdout apart from warnings on stderr.

Credentials never touch the disk or an argv: an HTTPS token (the app's own, or its GitHub App's
installation token, which the caller puts in `clone_token`: see `workers.host_auth`) becomes an
`http.<host>.extraHeader` passed through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`
environment variables, and an SSH deploy key becomes `GIT_SSH_COMMAND`. Those variables reach this
app's git commands only: git runs with the allow-listed environment of `workers.process` (plus git's
transport settings and proxies), never with the worker's whole environment and its other secrets.
"""

from __future__ import annotations

import base64
import functools
import os
import posixpath
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import git

from hooksvc.config import AppConfig
from hooksvc.errors import GitError
from hooksvc.logs import LogFn
from hooksvc.providers import host_kind
from hooksvc.redact import redact
from workers.process import GIT_ENV, PROXY_ENV, ProcessResult, run

#: A first clone of a large repository over a slow link takes minutes; this bounds a hung transfer
#: well inside the default job timeout (30 min) so the deployment fails with a git message instead.
NETWORK_TIMEOUT_SECONDS = 15 * 60
#: A commit's subject line and author as a deployment records them: a line to read, not the whole message.
COMMIT_SUMMARY_MAX_CHARS = 200
#: Lines of git's output quoted in an error message: enough for git's reason, short enough to read.
ERROR_TAIL_LINES = 6

#: What a branch fetch brings into the mirror: heads and tags only. A `--mirror` clone would also
#: copy `refs/pull/*` and `refs/merge-requests/*`, which on busy repositories outnumber the branches
#: by far and are never deployed. `+` because branches and tags may be force-pushed.
FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")

_HEX = re.compile(r"[0-9a-fA-F]{4,64}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: Characters and sequences git forbids in ref names (git-check-ref-format), plus a leading `-`
#: so that no name can be taken for an option. Rejecting them also keeps `main~3` or `v1^` from
#: resolving to some other commit than the one the ref names.
_BAD_REF = re.compile(r"(^-)|(\.\.)|(@\{)|[\x00-\x20\x7f~^:?*\[\\]|(^/)|(/$)|(\.lock\Z)|(^@\Z)")
#: What git commands take from the worker's environment besides `workers.process.BASE_ENV`.
GIT_INHERITED_ENV = GIT_ENV | PROXY_ENV


#: How a fetch's error starts when the origin refused the credentials it was given.
CREDENTIALS_REFUSED = "The origin rejected the app's credentials"


class CredentialsRefused(GitError):
    """The origin refused the app's credentials (a GitHub App's installation token may be renewed)."""


def _is_local_url(url: str) -> bool:
    """True for a path or `file://` URL: no host, no credentials, the operator's own disk."""
    if url.startswith("file://"):
        return True
    # scp-like `user@host:path` has a colon before any slash; a URL has `scheme://`.
    return "://" not in url and not re.match(r"^[^/]*:", url)


@dataclass(frozen=True)
class _Transport:
    """How git reaches the app's origin: the URL it is told and the environment that carries credentials."""

    url: str
    env: Mapping[str, str]
    secrets: tuple[str, ...]
    #: `git -c` settings the environment carries (credentials, the file protocol for local origins).
    config: tuple[tuple[str, str], ...] = ()
    #: The transport the origin uses, as git's `protocol.<name>.allow` names it.
    protocol: str = "file"

    def submodule_env(self) -> dict[str, str]:
        """The environment of `git submodule update`: the origin's own transport and no other.

        Git applies it to every git it starts for nested submodules too, so a `.gitmodules` at any
        depth cannot reach the worker's disk (`file`), another protocol (`ext::`, `ssh` from an
        HTTPS app) or a host through a transport the operator did not choose for this app.
        """
        allow = (("protocol.allow", "never"), (f"protocol.{self.protocol}.allow", "always"))
        return {**self.env, **_config_env([*self.config, *allow])}


def _config_env(entries: Sequence[tuple[str, str]]) -> dict[str, str]:
    """`git -c key=value` for each entry, through the environment so no value shows in `ps` output.

    Numbered from 0: the worker's own GIT_CONFIG_* variables are not passed to git (one of them may
    hold a git host token), so ours are the only ones.
    """
    env: dict[str, str] = {}
    for i, (key, value) in enumerate(entries):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    if entries:
        env["GIT_CONFIG_COUNT"] = str(len(entries))
    return env


def _transport(app: AppConfig) -> _Transport:
    # A prompt would hang the worker until the job timeout; failing at once names the real problem.
    env: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0"}
    config: list[tuple[str, str]] = []
    secrets: list[str] = []
    url = app.clone_url
    if app.ssh_key_file is not None:
        env["GIT_SSH_COMMAND"] = shlex.join([
            "ssh", "-i", str(app.ssh_key_file),
            "-o", "IdentitiesOnly=yes",  # only the deploy key, not whatever an agent offers
            "-o", "StrictHostKeyChecking=accept-new",  # first contact pins the host key; a change fails
            "-o", "BatchMode=yes",  # a key with a passphrase fails instead of prompting
        ])
    parts = urlsplit(url)
    if app.clone_token is not None and parts.scheme in ("http", "https") and parts.hostname:
        token = app.clone_token.reveal()
        # The host kind's clone user name (`HostKind.clone_user`) unless the URL names one: a
        # GitLab deploy token, say, needs its own (`https://gitlab+deploy-token-1@gitlab.example.com/...`).
        username = parts.username or host_kind(app.host_kind).clone_user
        basic = base64.b64encode(f"{username}:{token}".encode()).decode("ascii")
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        # Git would ask for a password for a URL carrying a user name; the header answers instead.
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        # Scoped to the origin's scheme and host: submodules on the same host get the token (the
        # the contract's "same credentials"), a submodule elsewhere never sees it.
        config.append((f"http.{parts.scheme}://{host}/.extraHeader", f"Authorization: Basic {basic}"))
        secrets += [token, basic]
    if _is_local_url(url):
        # Since git 2.38.1 submodules may not be cloned from local paths (CVE-2022-39253). An app
        # whose own clone_url is a local path is the operator's disk already, so its submodules may
        # be too; a remote repository's .gitmodules still cannot point into the worker's disk.
        config.append(("protocol.file.allow", "always"))
    env.update(_config_env(config))
    return _Transport(url=url, env=env, secrets=tuple(secrets), config=tuple(config), protocol=_protocol(url))


def _protocol(url: str) -> str:
    """git's name for the transport of `url`: `file`, `http`, `https`, `ssh` or `git`."""
    if _is_local_url(url):
        return "file"
    scheme = url.split("://", 1)[0].lower() if "://" in url else "ssh"  # scp-like `user@host:path` is ssh
    return "ssh" if scheme in ("ssh", "git+ssh", "ssh+git") else scheme


def _resolve_submodule_url(url: str, remote: str) -> str:
    """A `.gitmodules` URL as git resolves it: `./x` and `../x` against the superproject's `remote`."""
    if not url.startswith(("./", "../")):
        return url
    if remote.startswith("file://"):
        return "file://" + posixpath.normpath(posixpath.join(_local_path(remote), url))
    if _is_local_url(remote):
        return posixpath.normpath(posixpath.join(remote, url))
    return url  # a remote origin's relative URLs stay on its host and transport


def _local_path(url: str) -> str:
    """The filesystem path a local URL (a path or `file://`) names."""
    return unquote(urlsplit(url).path) if url.startswith("file://") else url


@functools.lru_cache(maxsize=256)
def _glob_regex(glob: str) -> re.Pattern[str]:
    """Compile a path glob: `**` spans directories, `*` and `?` stay within one, `[...]` is a class.

    The result also matches every path below a match, so `services/shop` and `services/shop/**` both
    cover `services/shop/app.py`, the way a git pathspec names a directory.
    """
    pattern = glob.strip("/")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1:end]
            # `[!x]` and `[^x]` both negate, as in git's wildmatch; `/` separates directories, so no
            # class matches it, negated or not.
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            # Literal in a glob class but special in a regex class.
            body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(f"(?!/)[{'^' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + "(?:/.*)?", re.DOTALL)


def touches(paths: Sequence[str], globs: Sequence[str]) -> bool:
    """True when any path matches any glob (`services/shop/**`, `**/Dockerfile`, `docs/*.md`).

    Globs match whole paths from the repository root; see `_glob_regex` for the syntax. With no
    globs nothing matches: a caller checks `app.paths` is set before filtering by it.
    """
    regexes = [_glob_regex(g) for g in globs if g.strip("/")]
    return any(r.fullmatch(p) for p in paths for r in regexes)


class GitMirror:
    """One app's bare mirror and release checkouts under `state_dir`.

    Every message and log line is redacted of `secrets` and of the app's clone credentials. Shas may
    be given full or abbreviated; every sha returned is full.
    """

    def __init__(
        self,
        app: AppConfig,
        state_dir: Path,
        log: LogFn,
        secrets: Sequence[str] = (),
        *,
        timeout: float = NETWORK_TIMEOUT_SECONDS,
        other_origins: Mapping[str, str] | None = None,
        releases_dir: Path | None = None,
    ) -> None:
        self.app = app
        self.mirror_dir = state_dir / "mirrors" / f"{app.name}.git"
        #: Where release checkouts go: the app's own, or (a preview's) a folder of their own.
        self.releases_dir = releases_dir or state_dir / "releases" / app.name
        self.scratch_dir = state_dir / "tmp" / app.name
        self._transport = _transport(app)
        self._secrets = tuple(s for s in (*secrets, *self._transport.secrets) if s)
        self._log = log
        self._timeout = timeout
        #: Full shas known to be commits of the mirror (see `_commit_of`).
        self._commits: dict[str, str] = {}
        #: Local paths no submodule of a local origin may name: (resolved path, what it is).
        self._forbidden_local = [(os.path.realpath(state_dir), "inside the worker's state_dir")] + [
            (os.path.realpath(_local_path(url)), f"the origin of app {name!r}")
            for name, url in (other_origins or {}).items() if name != app.name and _is_local_url(url)
        ]

    # -- logging and errors ---------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _emit(self, line: str) -> None:
        self._log(self._redact(line))

    @property
    def _url(self) -> str:
        return self._redact(self._transport.url)

    def _fail(self, what: str, result: ProcessResult, hint: str = "") -> GitError:
        if result.returncode == -9:
            reason = f"git did not finish within {self._timeout:.0f}s"
        else:
            lines = [ln for ln in result.tail if ln.strip()][-ERROR_TAIL_LINES:]
            reason = " / ".join(lines) or f"git exited with status {result.returncode}"
        return GitError(self._redact(f"{what}: {reason}{'. ' + hint if hint else ''}"))

    def _run(self, argv: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> ProcessResult:
        # Git runs before anything is built: an operator's cancel of the deployment kills it at once.
        return run(argv, cwd=cwd, env={**self._transport.env, **(env or {})}, inherit=GIT_INHERITED_ENV,
                   log=self._emit, timeout=self._timeout, cancellable=True)

    # -- the mirror ------------------------------------------------------------------------------

    def fetch(self) -> None:
        """Bring the mirror up to date with the origin's branches and tags, creating it on first use.

        Deleted branches and tags disappear from the mirror and force-pushed ones follow the origin.
        """
        self._clear_scratch("mirror-", "not-a-mirror-")
        started = time.monotonic()
        if self._mirror_exists():
            self._fetch_into(self.mirror_dir)
            self._emit(f"fetched {self._url} in {time.monotonic() - started:.1f}s")
            return
        if self.mirror_dir.exists():
            # We only ever rename complete mirrors into place, so this is something else (an empty
            # directory, a bad restore): move it to scratch, where the next operation deletes it.
            os.rename(self.mirror_dir, self._scratch("not-a-mirror-") / "mirror.git")
            self._emit(f"{self.mirror_dir} was not a git mirror: cloning it again")
        self._emit(f"creating the mirror of {self._url}")
        partial = self._scratch("mirror-")
        try:
            init = self._run(["git", "init", "--bare", "--quiet", str(partial)])
            if not init.ok:
                raise self._fail(f"cannot create a git repository in {partial}", init)
            self._fetch_into(partial)
            self.mirror_dir.parent.mkdir(parents=True, exist_ok=True)
            if not _rename_unless_present(partial, self.mirror_dir):
                self._emit("another worker created the mirror meanwhile: using that one")
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        self._emit(f"cloned {self._url} in {time.monotonic() - started:.1f}s")

    def _fetch_into(self, repo: Path) -> None:
        # The URL comes from the config on every fetch, so a changed clone_url takes effect at once
        # and nothing about the origin is stored in the mirror's config.
        # The commit-graph file makes `--contains` and `--is-ancestor` walks several times faster on
        # long histories; written incrementally by each fetch, it costs a few milliseconds.
        argv = [
            "git", "--git-dir", str(repo), "-c", "fetch.writeCommitGraph=true",
            "fetch", "--prune", "--force", "--no-write-fetch-head",
            "--end-of-options", self._transport.url, *FETCH_REFSPECS,
        ]
        self._run_fetch(argv, f"cannot fetch app {self.app.name!r} from {self._url}")

    def _run_fetch(self, argv: Sequence[str], what: str) -> None:
        """Run a fetch; GitError saying `what` failed and why (CredentialsRefused when the origin refused them)."""
        result = self._run(argv)
        if not result.ok:
            hint = self._fetch_hint(result)
            failure = self._fail(what, result, hint)
            if hint.startswith(CREDENTIALS_REFUSED):
                raise CredentialsRefused(str(failure))
            raise failure

    def fetch_ref(self, ref: str, into: str) -> str:
        """Fetch one ref of the origin (a pull request's head, `refs/pull/7/head`) into the mirror's
        `into` (outside refs/heads and refs/tags, so a branch fetch's prune leaves it); its commit.

        The mirror must exist (`fetch` first). Only this ref's objects come along: a repository's many
        pull-request refs are never mirrored.
        """
        if _BAD_REF.search(ref) or _BAD_REF.search(into) or not ref.startswith("refs/") or not into.startswith("refs/"):
            raise GitError(f"{ref!r} is not a ref this mirror fetches")
        self._git()
        argv = [
            "git", "--git-dir", str(self.mirror_dir), "fetch", "--force", "--no-write-fetch-head", "--no-tags",
            "--end-of-options", self._transport.url, f"+{ref}:{into}",
        ]
        self._run_fetch(argv, f"cannot fetch {ref} of app {self.app.name!r} from {self._url}")
        sha = self._commit_of(into)
        if sha is None:
            raise GitError(f"{ref} of {self._url} is not a commit")
        return sha

    def drop_ref(self, ref: str) -> None:
        """Delete a ref `fetch_ref` wrote (a torn-down preview's head); nothing when it is gone."""
        if ref.startswith("refs/") and not _BAD_REF.search(ref) and self._mirror_exists():
            self._query("update-ref", "-d", ref)

    def _fetch_hint(self, result: ProcessResult) -> str:
        output = "\n".join(result.tail).lower()
        has_credentials = self.app.clone_token is not None or self.app.ssh_key_file is not None
        if any(s in output for s in ("terminal prompts disabled", "authentication failed", " 401", " 403")):
            if has_credentials:
                return (f"{CREDENTIALS_REFUSED}: check that the token, deploy key or GitHub App installation "
                        "may read it")
            return "The origin wants credentials: set the app's token_env/token_file (HTTPS) or ssh_key_file (SSH)"
        if "permission denied (publickey" in output or "host key verification failed" in output:
            return "SSH refused: check ssh_key_file and that its public key is a deploy key of the repository"
        return (
            "Check that clone_url is right and reachable from the worker, and that the app's credentials "
            "(ssh_key_file or token_env/token_file) grant read access"
        )

    def _mirror_exists(self) -> bool:
        return (self.mirror_dir / "HEAD").is_file() and (self.mirror_dir / "objects").is_dir()

    def _git(self) -> git.Git:
        if not self._mirror_exists():
            raise GitError(f"app {self.app.name!r} has no mirror yet in {self.mirror_dir}: fetch first")
        return git.Git(self.mirror_dir)

    def _query(self, *args: str) -> tuple[int, str, str]:
        """Run a read-only git command in the mirror: (status, stdout, stderr), never raising on status.

        GitPython passes the worker's whole environment; these plumbing commands read our own mirror
        only and start no program a repository could choose (no hooks, filters or textconv).
        """
        status, out, err = self._git().execute(
            ["git", *args], with_extended_output=True, with_exceptions=False,
        )
        return status, str(out), str(err)

    def _commit_of(self, revision: str) -> str | None:
        if (known := self._commits.get(revision)) is not None:
            return known
        status, out, _ = self._query("rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
        found = out.strip() if status == 0 and _FULL_SHA.fullmatch(out.strip()) else None
        if found is not None and revision == found:
            # A full sha names that commit for good, and a commit stays in the mirror: one question
            # per sha, where a deployment's ref checks ask about the same few shas a dozen times.
            self._commits[revision] = found
        return found

    def _known_sha(self, sha: str) -> str | None:
        """The full sha of commit `sha` (full or abbreviated), or None when the mirror lacks it."""
        return self._commit_of(sha) if _HEX.fullmatch(sha) and self._mirror_exists() else None

    def _full_sha(self, sha: str) -> str:
        self._git()  # "fetch first" rather than "not in the mirror" when there is no mirror at all
        full = self._known_sha(sha)
        if full is None:
            raise GitError(
                f"commit {sha!r} is not in the mirror of app {self.app.name!r}: it is not a commit of "
                f"{self._url} (unknown, ambiguous or not pushed yet), or the mirror predates the push"
            )
        return full

    def resolve(self, ref: str) -> str:
        """The commit sha a branch, tag, full ref (`refs/heads/main`) or sha names in the mirror.

        A short name is looked up among branches first when the app deploys a branch and among tags
        first when it deploys tags; annotated tags give the commit they tag. A name that is no ref is
        tried as a (possibly abbreviated) sha. GitError when nothing matches.
        """
        if _FULL_SHA.fullmatch(ref.lower()):
            return self._full_sha(ref.lower())
        if not ref or _BAD_REF.search(ref):
            raise GitError(f"{ref!r} is not a valid branch or tag name for app {self.app.name!r}")
        if ref.startswith("refs/"):
            candidates = [ref]
        elif self.app.tags is not None:
            candidates = [f"refs/tags/{ref}", f"refs/heads/{ref}"]
        else:
            candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        for candidate in candidates:
            if (sha := self._commit_of(candidate)) is not None:
                return sha
        if _HEX.fullmatch(ref) and (sha := self._commit_of(ref)) is not None:
            return sha
        known = ", ".join(r.removeprefix("refs/") for r, _, _ in self._refs() if self.app.matches_ref(r))
        raise GitError(
            f"no branch, tag or commit {ref!r} in the mirror of app {self.app.name!r} ({self._url}); "
            f"refs this app deploys: {known or 'none'}"
        )

    def head_of(self, ref: str) -> str | None:
        """The commit a full ref (`refs/heads/main`) points at in the mirror, or None when it has none."""
        return self._commit_of(ref) if ref.startswith("refs/") and not _BAD_REF.search(ref) else None

    def has_commit(self, sha: str) -> bool:
        """True when `sha` (full or abbreviated, unambiguous) names a commit in the mirror."""
        return self._known_sha(sha) is not None

    def _refs(self) -> list[tuple[str, str, str]]:
        """(ref, object, peeled commit or "") for every branch and tag in the mirror."""
        status, out, err = self._query(
            "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)", "refs/heads/", "refs/tags/",
        )
        if status != 0:
            raise GitError(self._redact(f"cannot list the refs of the mirror {self.mirror_dir}: {err.strip()}"))
        rows = [line.split("\0") for line in out.splitlines() if line]
        return [(r[0], r[1], r[2]) for r in rows if len(r) == 3]

    def is_on_ref(self, sha: str) -> str | None:
        """The full ref this app deploys that holds `sha`, else None; GitError for an unknown sha.

        For branches, `sha` must be the branch head or one of its ancestors; for tags, a tag must
        point at `sha` itself (an annotated tag counts by the commit it tags). When several refs
        qualify, one whose head is `sha` wins, then the first by name.
        """
        full = self._full_sha(sha)
        if self.app.tags is not None:
            found = [r for r, obj, peeled in self._refs() if self.app.matches_ref(r) and full in (obj, peeled)]
            return min(found, default=None)
        # The branches holding `sha`, each with its head: one git command.
        status, out, err = self._query("for-each-ref", "--contains", full, "--format=%(refname)%00%(objectname)",
                                       "refs/heads/")
        if status != 0:
            raise GitError(self._redact(f"cannot tell which branches hold {full}: {err.strip()}"))
        heads = dict(line.split("\0", 1) for line in out.splitlines() if "\0" in line)
        found = [r for r in heads if self.app.matches_ref(r)]
        return min(found, key=lambda r: (heads[r] != full, r), default=None)

    def commit_summary(self, sha: str) -> tuple[str, str]:
        """The subject line and author name of commit `sha`, each cut to `COMMIT_SUMMARY_MAX_CHARS`."""
        status, out, err = self._query("log", "-1", "--no-show-signature", "--format=%s%x00%an", sha, "--")
        if status != 0:
            raise GitError(self._redact(f"cannot read commit {sha} in the mirror: {err.strip()}"))
        subject, _, author = out.strip("\n").partition("\0")
        return subject[:COMMIT_SUMMARY_MAX_CHARS], author[:COMMIT_SUMMARY_MAX_CHARS]

    def is_ancestor(self, a: str, b: str) -> bool:
        """True when commit `a` is an ancestor of commit `b` or the same commit.

        False as well when either commit is not in the mirror: a commit that was force-pushed away
        and pruned proves nothing, and a caller must not skip a push as stale on missing evidence.
        """
        fa, fb = self._known_sha(a), self._known_sha(b)
        if fa is None or fb is None:
            return False
        status, _, err = self._query("merge-base", "--is-ancestor", fa, fb)
        if status not in (0, 1):
            raise GitError(self._redact(f"cannot compare {a} and {b} in the mirror: {err.strip()}"))
        return status == 0

    def changed_paths(self, a: str, b: str) -> list[str]:
        """Paths that differ between commits `a` and `b`; a rename lists both names.

        GitError when either commit is unknown, in which case nothing can be said about the change.
        """
        fa, fb = self._full_sha(a), self._full_sha(b)
        # Plumbing, not `git diff`: no user config (diff.renames, external diff) changes the answer.
        status, out, err = self._query("diff-tree", "-r", "--no-commit-id", "--name-only", "--no-renames", "-z", fa, fb)
        if status != 0:
            raise GitError(self._redact(f"cannot diff {fa} and {fb}: {err.strip()}"))
        return [p for p in out.split("\0") if p]

    # -- releases --------------------------------------------------------------------------------

    def release_dir(self, sha: str) -> Path:
        return self.releases_dir / sha

    def checkout_release(self, sha: str) -> Path:
        """The plain tree of exactly commit `sha`, submodules included, under `releases/<app>/<sha>`.

        Reused when it exists (only complete checkouts are ever renamed into place); its mtime is
        renewed either way, which is what `prune_releases` orders by. The tree carries no `.git`:
        a release depends on nothing else on disk, and builds see no history.
        """
        full = self._full_sha(sha)
        target = self.release_dir(full)
        if target.is_dir():
            os.utime(target)
            self._emit(f"reusing the checkout of {full} in {target}")
            return target
        self._clear_scratch("release-")
        partial = self._scratch(f"release-{full[:12]}-")
        # mkdtemp makes the directory private; a release is read by docker and by containers that
        # bind-mount its files, like any git checkout.
        partial.chmod(0o755)
        try:
            self._checkout_into(partial, full)
            self.releases_dir.mkdir(parents=True, exist_ok=True)
            _rename_unless_present(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        os.utime(target)
        self._emit(f"checked out {full} into {target}")
        return target

    def _checkout_into(self, work: Path, sha: str) -> None:
        # `--shared` borrows the mirror's objects instead of copying them; `.git` (and with it that
        # link) is removed once the files are out, so the release never depends on the mirror.
        clone = self._run(["git", "clone", "--shared", "--no-checkout", "--quiet", str(self.mirror_dir), str(work)])
        if not clone.ok:
            raise self._fail(f"cannot prepare a checkout of {sha}", clone)
        checkout = self._run(
            ["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha], cwd=work
        )
        if not checkout.ok:
            raise self._fail(f"cannot check out {sha}", checkout)
        if (work / ".gitmodules").is_file():
            self._update_submodules(work, sha)
        _remove_git_metadata(work)

    def _update_submodules(self, work: Path, sha: str) -> None:
        # Relative submodule URLs (`../lib.git`) resolve against origin, which must be the app's
        # clone URL (as the host serves it), not the local mirror the checkout was cloned from.
        set_url = self._run(["git", "remote", "set-url", "origin", self._transport.url], cwd=work)
        if not set_url.ok:
            raise self._fail("cannot point the checkout at the app's clone URL", set_url)
        self._emit(f"updating the submodules of {sha}")
        self._update_submodules_in(work, self._transport.url, sha)

    def _update_submodules_in(self, directory: Path, remote: str, sha: str) -> None:
        """`git submodule update` in `directory`, whose own origin is `remote`.

        A local origin may have local submodules, so each level's URLs are checked before git clones
        them (`refuse_local_submodule`), one level at a time; a remote origin's transport alone keeps
        every level off the worker's disk, so git recurses by itself.
        """
        local = self._transport.protocol == "file"
        submodules = self._submodules(directory) if local else []
        for name, url in submodules:
            self._refuse_local_submodule(name, _resolve_submodule_url(url, remote))
        # `--checkout` overrides an `update = none|merge|rebase` in .gitmodules: a release is exactly
        # the commits the superproject records, nothing else.
        argv = ["git", "submodule", "update", "--init", "--checkout", *([] if local else ["--recursive"])]
        update = run(argv, cwd=directory, env=self._transport.submodule_env(), inherit=GIT_INHERITED_ENV,
                     log=self._emit, timeout=self._timeout, cancellable=True)
        if not update.ok:
            raise self._fail(
                f"cannot fetch the submodules of {sha}",
                update,
                "Submodules are fetched with the app's own credentials and over its origin's transport "
                f"({self._transport.protocol}) only: check their URLs in .gitmodules and that the deploy key "
                "or token can read them",
            )
        for name, url in submodules:
            path = self._submodule_path(directory, name)
            if path is not None and (directory / path / ".gitmodules").is_file():
                self._update_submodules_in(directory / path, _resolve_submodule_url(url, remote), sha)

    def _submodules(self, directory: Path) -> list[tuple[str, str]]:
        """(name, url) of each submodule `.gitmodules` in `directory` declares."""
        result = run(["git", "config", "-f", ".gitmodules", "--get-regexp", r"^submodule\..*\.url$"],
                     cwd=directory, capture=True, timeout=self._timeout)
        found = []
        for line in result.output.splitlines():
            key, _, url = line.partition(" ")
            found.append((key.removeprefix("submodule.").removesuffix(".url"), url.strip()))
        return found

    def _submodule_path(self, directory: Path, name: str) -> str | None:
        result = run(["git", "config", "-f", ".gitmodules", "--get", f"submodule.{name}.path"],
                     cwd=directory, capture=True, timeout=self._timeout)
        path = result.output.strip()
        return path if result.ok and path else None

    def _refuse_local_submodule(self, name: str, url: str) -> None:
        """A local submodule may not be another app's origin, nor anything under the worker's `state_dir`.

        Either would copy another app's source (its origin, or the mirror of an app cloned from a
        git host) into this app's release, where this app's pushers read it.
        """
        if not _is_local_url(url):
            return  # refused by the transport, if it is not the origin's
        real = os.path.realpath(_local_path(url))
        for forbidden, what in self._forbidden_local:
            if real == forbidden or real.startswith(forbidden.rstrip("/") + "/"):
                raise GitError(self._redact(
                    f"submodule {name!r} of app {self.app.name!r} points at {url} ({real}), {what}: a release "
                    f"may not include another app's source; vendor it or give it its own repository"
                ))

    def prune_releases(self, keep: int, protect: Collection[str] = ()) -> list[str]:
        """Delete release checkouts but the `keep` most recently used and those in `protect`.

        `protect` holds shas (full, or prefixes of at least 4 characters) that stay whatever their
        age, e.g. the live and the previous release. Returns the removed shas, oldest first.
        """
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep!r}")
        self._clear_scratch("trash-")
        if not self.releases_dir.is_dir():
            return []
        releases = [d for d in self.releases_dir.iterdir() if d.is_dir() and _FULL_SHA.fullmatch(d.name)]
        releases.sort(key=lambda d: (d.stat().st_mtime_ns, d.name), reverse=True)
        prefixes = [p.lower() for p in protect if len(p) >= 4]
        removed: list[str] = []
        for release in reversed(releases[keep:]):
            if any(release.name.startswith(p) for p in prefixes):
                continue
            # Renamed out first: a worker dying in the middle of rmtree must not leave a partial
            # tree where checkout_release would take it for a complete release.
            trash = self._scratch(f"trash-{release.name[:12]}-")
            os.rename(release, trash / release.name)
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(release.name)
        return removed

    # -- scratch space ---------------------------------------------------------------------------

    def _scratch(self, prefix: str) -> Path:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch_dir))

    def _clear_scratch(self, *prefixes: str) -> None:
        """Remove what an interrupted operation of the same kind left behind (see the module docstring).

        Only the caller's own kind: a fetch that runs without the deploy lock (a poller, an operator)
        must not delete the checkout a deployment is writing.
        """
        if self.scratch_dir.is_dir():
            for leftover in self.scratch_dir.iterdir():
                if not leftover.name.startswith(prefixes):
                    continue
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)


def _rename_unless_present(source: Path, target: Path) -> bool:
    """Move `source` to `target`; False when `target` appeared meanwhile (it is kept, `source` is not moved)."""
    try:
        os.rename(source, target)
    except OSError:
        if target.is_dir():
            return False
        raise
    return True


def _remove_git_metadata(tree: Path) -> None:
    """Delete every `.git` entry under `tree`; git never tracks a path named `.git`, so all are ours."""
    for dirpath, dirnames, filenames in os.walk(tree):
        if ".git" in dirnames:
            dirnames.remove(".git")
            shutil.rmtree(Path(dirpath) / ".git")
        if ".git" in filenames:
            (Path(dirpath) / ".git").unlink()
