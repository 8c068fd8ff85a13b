"""Plain bare repositories on this machine: what a `post-receive` hook asks of the repository it runs
in, and the quickstart's example repository. Git runs through `workers.process` (argv, allow-listed
environment), with the repository named explicitly: a hook's own GIT_DIR is not passed on."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from hooksvc.errors import GitError
from hooksvc.providers import ZERO_SHA
from workers.process import run

#: Local git commands on a small repository finish in milliseconds; this bounds a stuck one.
GIT_TIMEOUT_SECONDS = 60.0
#: Author and committer of the commit the quickstart creates.
EXAMPLE_AUTHOR = {"GIT_AUTHOR_NAME": "hooksvc", "GIT_AUTHOR_EMAIL": "hooksvc@localhost",
                  "GIT_COMMITTER_NAME": "hooksvc", "GIT_COMMITTER_EMAIL": "hooksvc@localhost"}


def _git(args: list[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    result = run(["git", *args], cwd=cwd, env=env, capture=True, timeout=GIT_TIMEOUT_SECONDS)
    if not result.ok:
        raise GitError(f"git {' '.join(args[:3])} failed (exit {result.returncode}): {' '.join(result.tail[-3:])}")
    return result.output.strip()


def is_forced_update(repo_dir: Path, before: str, after: str) -> bool:
    """True when moving a ref from `before` to `after` dropped commits (a forced push)."""
    if before == ZERO_SHA or after == ZERO_SHA:
        return False
    result = run(["git", f"--git-dir={repo_dir}", "merge-base", "--is-ancestor", before, after],
                 timeout=GIT_TIMEOUT_SECONDS)
    return result.returncode == 1  # 0: an ancestor; 1: not; anything else: cannot tell, so not forced


def create_bare_repository(repo_dir: Path, files: Mapping[str, str], branch: str, message: str) -> str:
    """A new bare repository at `repo_dir` whose `branch` holds `files` in one commit; returns its sha."""
    _git(["init", "--quiet", "--bare", f"--initial-branch={branch}", str(repo_dir)])
    with tempfile.TemporaryDirectory(prefix="hooksvc-example-") as tmp:
        work = Path(tmp)
        for name, text in files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        _git(["init", "--quiet", f"--initial-branch={branch}"], cwd=work)
        _git(["add", "--all"], cwd=work)
        _git(["commit", "--quiet", "--no-gpg-sign", "-m", message], cwd=work, env=EXAMPLE_AUTHOR)
        _git(["push", "--quiet", str(repo_dir), f"HEAD:refs/heads/{branch}"], cwd=work)
        return _git(["rev-parse", "HEAD"], cwd=work)
