"""Real git repositories for tests: an origin to push to, and a token-protected HTTP server for it.

`GitOrigin` is the git host's copy of a repository: a bare repository whose branches and tags tests
move the way pushes would (new commits, tags, forced resets, submodules). Commits are written with
plumbing straight into the bare repository, so no work tree, checkout or hook is involved, and
commit dates come from a counter, so two commits never share a sha by accident.

`GitHttpServer` serves bare repositories with `git http-backend` on 127.0.0.1, behind HTTP basic
auth that wants a token as the password, like GitHub, GitLab or Gitea with a private repository.

The fixtures that make them are in tests/fixtures/git.py.
"""

from __future__ import annotations

import base64
import itertools
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

#: The token `git_http_server` wants as the basic-auth password; long and unusual, so a grep for it
#: in logs and on disk cannot hit anything else.
HTTP_TOKEN = "hooksvc-test-clone-token-7Hq2ZpW9"
ZERO_SHA = "0" * 40

#: Commit and tag dates: one second apart per object, starting 2023-11-14, the same in every run.
_clock = itertools.count(1_700_000_000)


def git_env() -> dict[str, str]:
    """Environment for git commands in tests: fixed identity, no user or system config."""
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.invalid",
        "GIT_COMMITTER_NAME": "Test Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }


def git(*args: str, cwd: Path | None = None, input: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git and return its stdout, stripped; raise with git's stderr on failure."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, env={**git_env(), **(env or {})}, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace").strip()


class GitOrigin:
    """A bare repository playing the git host: `commit`, `tag`, `reset` are what pushes would do."""

    def __init__(self, path: Path, url: str | None = None) -> None:
        self.path = path
        #: What a clone_url would say; the path itself unless the repository is served over HTTP.
        self.url = url or str(path)
        if not (path / "HEAD").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            git("init", "--bare", "--quiet", "--initial-branch=main", str(path))

    def __repr__(self) -> str:
        return f"GitOrigin({self.url!r})"

    def _git(self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
        return git("--git-dir", str(self.path), *args, input=input, env=env)

    def sha(self, revision: str) -> str | None:
        """The commit `revision` (branch, tag, sha) names, or None."""
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        except RuntimeError:
            return None

    def head(self, branch: str = "main") -> str:
        """The sha at the tip of `branch`."""
        sha = self.sha(f"refs/heads/{branch}")
        if sha is None:
            raise KeyError(f"{self} has no branch {branch!r}")
        return sha

    def commit(
        self,
        message: str,
        files: Mapping[str, str | bytes | None] | None = None,
        *,
        branch: str = "main",
        start: str | None = None,
        gitlinks: Mapping[str, str] | None = None,
        symlinks: Mapping[str, str] | None = None,
    ) -> str:
        """Add a commit on top of `branch` and return its sha; `files` maps paths to content (None deletes).

        A branch that does not exist yet starts at `start` (a sha or branch name), else at `main`'s
        head, else as a root commit. `gitlinks` maps paths to submodule commit shas, `symlinks` paths
        to the targets of symbolic links.
        """
        old = self.sha(f"refs/heads/{branch}")
        parent = old or (self.sha(start) if start else self.sha("refs/heads/main"))
        if start and parent is None:
            raise KeyError(f"{self}: unknown start {start!r}")
        lines: list[str] = []
        for path, content in (files or {}).items():
            if content is None:
                lines.append(f"0 {ZERO_SHA}\t{path}")
            else:
                data = content.encode() if isinstance(content, str) else content
                blob = self._git("hash-object", "-w", "--stdin", input=data)
                lines.append(f"100644 {blob}\t{path}")
        lines += [f"160000 {sha}\t{path}" for path, sha in (gitlinks or {}).items()]
        for path, target in (symlinks or {}).items():
            blob = self._git("hash-object", "-w", "--stdin", input=target.encode())
            lines.append(f"120000 {blob}\t{path}")
        with tempfile.TemporaryDirectory() as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self._git("read-tree", parent, env=index)
            else:
                self._git("read-tree", "--empty", env=index)
            if lines:
                self._git("update-index", "--index-info", input=("\n".join(lines) + "\n").encode(), env=index)
            tree = self._git("write-tree", env=index)
        date = f"@{next(_clock)} +0000"
        parents = ["-p", parent] if parent else []
        sha = self._git(
            "commit-tree", tree, *parents, "-m", message,
            env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
        )
        self._git("update-ref", f"refs/heads/{branch}", sha, old or ZERO_SHA)
        return sha

    def tag(self, name: str, sha: str | None = None, *, message: str | None = None, force: bool = False) -> str:
        """Tag `sha` (default: `main`'s head), annotated when `message` is given; return the tagged sha."""
        target = sha or self.head()
        date = f"@{next(_clock)} +0000"
        args = ["tag", *(["-f"] if force else []), *(["-a", "-m", message] if message else []), name, target]
        self._git(*args, env={"GIT_COMMITTER_DATE": date})
        return target

    def reset(self, branch: str, sha: str) -> None:
        """Point `branch` at `sha` whatever it held before: a `git push --force`."""
        self._git("update-ref", f"refs/heads/{branch}", sha)

    def delete_branch(self, branch: str) -> None:
        self._git("update-ref", "-d", f"refs/heads/{branch}")

    def delete_tag(self, name: str) -> None:
        self._git("update-ref", "-d", f"refs/tags/{name}")

    def refs(self) -> dict[str, str]:
        """Every branch and tag with the object it points at."""
        out = self._git("for-each-ref", "--format=%(refname) %(objectname)")
        return {ref: obj for ref, _, obj in (line.partition(" ") for line in out.splitlines() if line)}

    def read(self, sha: str, path: str) -> bytes:
        """The content of `path` at commit `sha`."""
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), "cat-file", "blob", f"{sha}:{path}"],
            capture_output=True, env=git_env(), check=True,
        )
        return proc.stdout

    def add_submodule(
        self,
        path: str,
        sub: GitOrigin,
        *,
        sha: str | None = None,
        url: str | None = None,
        branch: str = "main",
        message: str | None = None,
    ) -> str:
        """Commit `sub` as a submodule at `path` (at `sha`, default its `main` head); return the new sha.

        `url` is what .gitmodules records (default `sub.url`); a relative one such as `../lib.git`
        resolves against the superproject's own URL, as on a git host.
        """
        target = sha or sub.head()
        parent = self.sha(f"refs/heads/{branch}") or self.sha("refs/heads/main")
        gitmodules = self._read_text(parent, ".gitmodules") if parent else ""
        recorded = {ln.split("=", 1)[1].strip() for ln in gitmodules.splitlines() if ln.strip().startswith("path")}
        if path not in recorded:
            gitmodules += f'[submodule "{path}"]\n\tpath = {path}\n\turl = {url or sub.url}\n'
        return self.commit(
            message or f"submodule {path} at {target[:12]}",
            {".gitmodules": gitmodules},
            branch=branch,
            gitlinks={path: target},
        )

    def _read_text(self, sha: str, path: str) -> str:
        try:
            return self.read(sha, path).decode()
        except subprocess.CalledProcessError:
            return ""


class _GitHttpHandler(BaseHTTPRequestHandler):
    server: _GitHttpd

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        pass

    def _authorized(self) -> tuple[bool, str]:
        """(whether the request carries the token as its basic-auth password, the user name sent)."""
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return False, ""
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except ValueError:
            return False, ""
        if self.server.accepts is not None:
            return self.server.accepts(password), user
        return password == self.server.token, user

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        ok, user = self._authorized()
        self.server.requests.append((self.command, parts.path, ok, user))
        if (self.server.token is not None or self.server.accepts is not None) and not ok:
            body = b"authentication required\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = self._body()
        env = {
            **git_env(),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(parts.path),
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": user,
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        proc = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env, check=False)
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _GitHttpd(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str | None, accepts: Callable[[str], bool] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _GitHttpHandler)
        self.root = root
        self.token = token
        self.accepts = accepts
        #: (method, path, authorized, user name) of every request, for assertions.
        self.requests: list[tuple[str, str, bool, str]] = []


class GitHttpServer:
    """`git http-backend` on 127.0.0.1 serving the bare repositories under `root`.

    With a `token`, every request needs HTTP basic auth with that token as the password (any user
    name); with `accepts`, a password it says yes to (installation tokens that change); without
    either the repositories are public.
    """

    def __init__(self, root: Path, token: str | None = HTTP_TOKEN,
                 accepts: Callable[[str], bool] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.token = token
        self._httpd = _GitHttpd(root, token, accepts)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="git-http", daemon=True)
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[tuple[str, str, bool, str]]:
        return self._httpd.requests

    def origin(self, name: str) -> GitOrigin:
        """A repository served at `<url>/<name>.git` (made on first use)."""
        return GitOrigin(self.root / f"{name}.git", url=f"{self.url}/{name}.git")

    def start(self) -> GitHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
