"""How long the worker's git step takes on a repository with a long history.

Builds (with `git fast-import`, in seconds) a bare origin with 20,000 commits on `main` touching
500 files, a tag every 1,000 commits, and a few feature branches; clones it into a mirror with
`workers.git.GitMirror`; then, several times, pushes one commit and times the incremental fetch that
a deployment starts with. Also times the other questions a deployment asks the mirror and the
release checkout. Target: the incremental fetch under 1 s.

    .venv/bin/python bench/bench_git_fetch.py [--commits 20000] [--rounds 5] [--json]

Prints a table (or JSON with `--json`); exits 1 when the median incremental fetch misses the target.
Everything happens in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hooksvc.config import AppConfig, Secret
from workers.git import GitMirror
from workers.process import run

#: The incremental fetch a deployment starts with must stay well inside the webhook-to-live budget.
TARGET_SECONDS = 1.0
#: Files the history spreads over: each commit rewrites one, so trees stay realistic and deltas work.
FILES = 500
TAG_EVERY = 1000
BRANCHES = 5
#: Fixed committer dates make the repository, and so the numbers, the same from run to run.
EPOCH = 1_700_000_000

T = TypeVar("T")


def git(*args: str, stdin: bytes | None = None) -> str:
    result = run(["git", *args], env={"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"},
                 capture=True, stdin=stdin)
    if not result.ok:
        sys.exit(f"git {' '.join(args[:3])} failed: {result.output[-500:]}")
    return result.output.strip()


def blob(text: str) -> bytes:
    data = text.encode()
    return b"data %d\n%s\n" % (len(data), data)


def commit_record(ref: str, mark: int, when: int, message: str, path: str, content: str, parent: str) -> bytes:
    return b"".join([
        f"commit {ref}\nmark :{mark}\n".encode(),
        f"committer Bench <bench@example.invalid> {when} +0000\n".encode(),
        blob(message),
        f"from {parent}\n".encode() if parent else b"",
        f"M 100644 inline {path}\n".encode(),
        blob(content),
    ])


def history_stream(commits: int) -> bytes:
    """A fast-import stream: `commits` commits on main, tags, and branches forking off the history."""
    parts: list[bytes] = []
    for n in range(1, commits + 1):
        parent = f":{n - 1}" if n > 1 else ""
        parts.append(commit_record("refs/heads/main", n, EPOCH + n, f"change {n}", f"src/f{n % FILES}.txt",
                                   f"line {n}\n" * 20, parent))
        if n % TAG_EVERY == 0:
            parts.append(f"reset refs/tags/v{n // TAG_EVERY}.0\nfrom :{n}\n\n".encode())
    for b in range(BRANCHES):
        fork = commits * (b + 1) // (BRANCHES + 1)
        mark = commits + 1 + b
        parts.append(commit_record(f"refs/heads/feature-{b}", mark, EPOCH + mark, f"feature {b}",
                                   f"feature/{b}.txt", "wip\n", f":{fork}"))
    return b"".join(parts)


def push_one_commit(origin: Path, n: int) -> str:
    """What a developer's push does to the origin: one more commit on main."""
    stream = commit_record("refs/heads/main", 1, EPOCH + 10_000_000 + n, f"pushed {n}",
                           f"src/f{n % FILES}.txt", f"pushed {n}\n", "refs/heads/main^0")
    git("--git-dir", str(origin), "fast-import", "--quiet", stdin=stream)
    return git("--git-dir", str(origin), "rev-parse", "refs/heads/main")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5, help="incremental fetches to time")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-git-") as tmp:
        root = Path(tmp)
        origin = root / "origin.git"
        git("init", "--bare", "--quiet", "--initial-branch=main", str(origin))
        build_s, _ = timed(lambda: git("--git-dir", str(origin), "fast-import", "--quiet",
                                       stdin=history_stream(args.commits)))
        first_sha = git("--git-dir", str(origin), "rev-list", "--max-parents=0", "refs/heads/main")

        app = AppConfig(name="bench", host="github", host_kind="github", repo="acme/bench",
                        clone_url=str(origin), secret=Secret("unused"))
        lines: list[str] = []
        mirror = GitMirror(app, root / "state", lines.append)
        clone_s, _ = timed(mirror.fetch)
        noop_s, _ = timed(mirror.fetch)

        fetch_s: list[float] = []
        head = ""
        for n in range(args.rounds):
            head = push_one_commit(origin, n)
            seconds, _ = timed(mirror.fetch)
            fetch_s.append(seconds)
            if mirror.resolve("main") != head:
                sys.exit(f"round {n}: the mirror did not see the pushed commit {head}")

        resolve_s, _ = timed(lambda: mirror.resolve("main"))
        on_ref_head_s, ref = timed(lambda: mirror.is_on_ref(head))
        on_ref_root_s, _ = timed(lambda: mirror.is_on_ref(first_sha))
        ancestor_s, _ = timed(lambda: mirror.is_ancestor(first_sha, head))
        diff_s, changed = timed(lambda: mirror.changed_paths(first_sha, head))
        checkout_s, release = timed(lambda: mirror.checkout_release(head))
        reuse_s, _ = timed(lambda: mirror.checkout_release(head))
        assert ref == "refs/heads/main" and len(changed) == FILES and (release / "src").is_dir()

        median = statistics.median(fetch_s)
        result = {
            "commits": args.commits + args.rounds,
            "files": FILES,
            "build_origin_s": round(build_s, 3),
            "first_fetch_clone_s": round(clone_s, 3),
            "noop_fetch_s": round(noop_s, 3),
            "incremental_fetch_s": {"median": round(median, 3), "max": round(max(fetch_s), 3),
                                    "rounds": [round(s, 3) for s in fetch_s]},
            "resolve_s": round(resolve_s, 4),
            "is_on_ref_head_s": round(on_ref_head_s, 4),
            "is_on_ref_root_commit_s": round(on_ref_root_s, 4),
            "is_ancestor_root_head_s": round(ancestor_s, 4),
            "changed_paths_root_head_s": round(diff_s, 4),
            "checkout_release_s": round(checkout_s, 3),
            "checkout_release_reuse_s": round(reuse_s, 4),
            "target_s": TARGET_SECONDS,
            "pass": median < TARGET_SECONDS,
        }

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
