"""Webhook intake benchmark: signed GitHub push → 202 on `hooksvc serve`, against a bare handler.

Issue 2's targets, measured side by side in one run against one private, freshly flushed Redis:

- throughput (wrk, closed loop, 64 connections): hooksvc at least 0.8× the bare handler;
- latency at a constant 200 requests/s (open loop, timed from the *scheduled* send so a stalled
  server cannot hide its stall): hooksvc p99 under 25 ms;
- memory: every hooksvc web process (gunicorn master and each worker) under 80 MB RSS after the load.

Every request is a distinct signed push (own `after` sha, own delivery id) rotating over several
apps, so the measured path is the real 202 path with coalescing, never the duplicate path. Each
phase starts on an emptied Redis, so the same pool of pushes is new again in every phase. Next to
the latencies it reports what explains them: worker CPU time per 202, Redis commands per 202,
the machine's load, delayed AOF fsyncs.

    .venv/bin/python bench/bench_webhooks.py [--no-check] [--rounds N] [--json PATH]

Exits 1 when a target is missed (unless --no-check), 2 when the run itself was invalid (a
request answered other than 202, the request pool wrapped around).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

# Run as a script (`python bench/bench_webhooks.py`), sys.path holds bench/ only; the payload
# builders in tests/ and the production defaults in hooksvc/ are imported from the repository.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hooksvc.config import parse_config  # noqa: E402
from hooksvc.defaults import WEB_CONNECTIONS, WEB_PROCESSES, WEB_THREADS  # noqa: E402
from tests.helpers.payloads import commit_sha, github_push, github_request, payload_text  # noqa: E402
from tests.helpers.redis_server import free_port  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent

# -- targets (issue 2) ----------------------------------------------------------------------------
MIN_THROUGHPUT_RATIO = 0.8
MAX_P99_MS_AT_RATE = 25.0
MAX_PROCESS_RSS_MB = 80.0

# -- defaults -------------------------------------------------------------------------------------
CONNECTIONS = 64
#: Short phases, many of them: this machine's speed drifts by ±20 % over tens of seconds (it is a
#: shared VM), so a ratio of two long phases measures the drift as much as the servers. The ratio is
#: taken per round (the two servers back to back, order alternating) and its median reported.
DURATION_SECONDS = 5.0
RATE_PER_SECOND = 200.0
RATE_DURATION_SECONDS = 10.0
APPS = 5
#: Throughput rounds, the order of the servers alternating (the single rounds of one run spread over ±0.1).
ROUNDS = 10
#: Rounds that also run the constant-rate latency phase (latency does not drift the way throughput does).
RATE_ROUNDS = 1
#: wrk threads: one per core of the 2-core machine this was written for; more only steal CPU
#: from the servers under test.
WRK_THREADS = 2
#: Signed requests prepared per round of wrk. Must exceed what the faster server answers in one
#: wrk run, else the pool wraps and duplicates (200, a cheaper path) get measured; wrapping is
#: detected and fails the run.
POOL_PER_SECOND = 6000
#: A request still unanswered this long after its scheduled time counts as a timeout.
REQUEST_TIMEOUT_SECONDS = 5.0
#: Requests sent to each server before measuring, so lazy imports and connection pools are warm.
WARMUP_REQUESTS = 400
#: Pause between phases: lets the last phase's in-flight requests and Redis's AOF writes settle.
SETTLE_SECONDS = 1.0
SERVER_START_TIMEOUT_SECONDS = 20.0
#: gunicorn's graceful stop lets workers finish what they hold; by then they hold nothing.
SERVER_STOP_TIMEOUT_SECONDS = 15.0

#: Stands in for the `after` sha in the payload templates; the Lua script and the Python client
#: replace it, so a body is built by concatenation instead of JSON-encoding per request.
SHA_MARKER = "5ca1ab1e" * 5
PUSH_REF = "refs/heads/main"
DEFAULT_JSON = BENCH_DIR / "results" / "webhooks.json"


# -- the request pool -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchApp:
    name: str
    repo: str
    secret: str
    secret_env: str


@dataclass(frozen=True)
class SignedPush:
    app: int
    sha: str
    delivery_id: str
    signature_256: str
    signature_1: str


@dataclass
class RequestPool:
    """Signed pushes plus one body template per app, as the Lua script and the Python client share them."""

    apps: list[BenchApp]
    #: Per app: the JSON body split at SHA_MARKER.
    templates: list[list[bytes]]
    pushes: list[SignedPush]

    def body(self, push: SignedPush) -> bytes:
        return push.sha.encode("ascii").join(self.templates[push.app])

    def raw_request(self, push: SignedPush, host: str) -> bytes:
        body = self.body(push)
        head = (
            f"POST /hooks/github HTTP/1.1\r\nHost: {host}\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-GitHub-Event: push\r\nX-GitHub-Delivery: {push.delivery_id}\r\nX-GitHub-Hook-ID: 1\r\n"
            f"X-Hub-Signature: sha1={push.signature_1}\r\nX-Hub-Signature-256: sha256={push.signature_256}\r\n\r\n"
        )
        return head.encode("ascii") + body


def make_apps(count: int) -> list[BenchApp]:
    return [
        BenchApp(name=f"app{i}", repo=f"bench/app{i}", secret=f"bench-secret-{i}-{uuid.uuid4().hex}",
                 secret_env=f"BENCH_APP{i}_SECRET")
        for i in range(count)
    ]


def make_pool(apps: list[BenchApp], size: int) -> RequestPool:
    templates: list[list[bytes]] = []
    for bench_app in apps:
        text = payload_text(github_push(repo=bench_app.repo, ref=PUSH_REF, after=SHA_MARKER))
        parts = text.split(SHA_MARKER.encode("ascii"))
        # `after`, the commit id and head_commit id: if the example payload changes shape, say so.
        assert len(parts) == 4, f"expected the sha 3 times in the push payload, found {len(parts) - 1}"
        templates.append(parts)
    keys = [a.secret.encode("utf-8") for a in apps]
    pushes: list[SignedPush] = []
    for i in range(size):
        app = i % len(apps)
        sha = commit_sha(i)
        body = sha.encode("ascii").join(templates[app])
        pushes.append(SignedPush(
            app=app,
            sha=sha,
            delivery_id=str(uuid.uuid4()),
            signature_256=hmac.new(keys[app], body, hashlib.sha256).hexdigest(),
            signature_1=hmac.new(keys[app], body, hashlib.sha1).hexdigest(),
        ))
    pool = RequestPool(apps=apps, templates=templates, pushes=pushes)
    # The concatenated body must be byte for byte what the payload builder signs.
    reference = github_request(github_push(repo=apps[0].repo, ref=PUSH_REF, after=pushes[0].sha), apps[0].secret)
    assert pool.body(pushes[0]) == reference.body
    assert reference.header("X-Hub-Signature-256") == f"sha256={pushes[0].signature_256}"
    return pool


# -- wrk ------------------------------------------------------------------------------------------

WRK_SCRIPT = """\
-- Generated by bench/bench_webhooks.py: one distinct signed push per request, never repeated
-- silently (a wrapped pool sends duplicates, which are counted). wrk cannot compute an HMAC, so
-- the signatures are precomputed and the body is rebuilt from its template around the sha.
local DATA = %(data)s
local TEMPLATES = {%(templates)s}
local MARKER = %(marker)s
local THREADS = %(threads)d
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function split(text, sep)
  local parts, start = {}, 1
  while true do
    local i, j = string.find(text, sep, start, true)
    if not i then table.insert(parts, string.sub(text, start)); return parts end
    table.insert(parts, string.sub(text, start, i - 1))
    start = j + 1
  end
end

function init(args)
  parts = {}
  for _, path in ipairs(TEMPLATES) do
    local f = assert(io.open(path, "rb"))
    table.insert(parts, split(f:read("*a"), MARKER))
    f:close()
  end
  pushes = {}
  local n = 0
  -- Thread k takes lines k, k+THREADS, ...: the threads never send the same push.
  for line in io.lines(DATA) do
    if n %% THREADS == id - 1 then
      local app, sha, delivery, s256, s1 = string.match(line, "^(%%d+) (%%x+) (%%S+) (%%x+) (%%x+)$")
      table.insert(pushes, {tonumber(app) + 1, sha, delivery, s256, s1})
    end
    n = n + 1
  end
  i = 0
  passes = 0
  wrapped = 0
  s202 = 0
  s200 = 0
  other = 0
end

function request()
  i = i + 1
  if i > #pushes then i = 1; passes = passes + 1 end
  if passes > 0 then wrapped = wrapped + 1 end
  local p = pushes[i]
  local t = parts[p[1]]
  local body = t[1] .. p[2] .. t[2] .. p[2] .. t[3] .. p[2] .. t[4]
  return wrk.format("POST", "/hooks/github", {
    ["User-Agent"] = "GitHub-Hookshot/bench",
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = p[3],
    ["X-GitHub-Hook-ID"] = "1",
    ["X-Hub-Signature"] = "sha1=" .. p[5],
    ["X-Hub-Signature-256"] = "sha256=" .. p[4],
  }, body)
end

function response(status, headers, body)
  if status == 202 then s202 = s202 + 1 elseif status == 200 then s200 = s200 + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local c = {s202 = 0, s200 = 0, other = 0, wrapped = 0}
  for _, t in ipairs(threads) do
    for k, _ in pairs(c) do c[k] = c[k] + t:get(k) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,' ..
    '"status_202":%%d,"status_200":%%d,"status_other":%%d,"wrapped":%%d,' ..
    '"errors_connect":%%d,"errors_read":%%d,"errors_write":%%d,"errors_timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, c.s202, c.s200, c.other, c.wrapped,
    e.connect, e.read, e.write, e.timeout))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string without non-ASCII escapes is a valid Lua string


def write_wrk_script(pool: RequestPool, workdir: Path, threads: int) -> Path:
    template_paths = []
    for index, parts in enumerate(pool.templates):
        path = workdir / f"template-{index}.json"
        path.write_bytes(SHA_MARKER.encode("ascii").join(parts))
        template_paths.append(path)
    data = workdir / "pushes.txt"
    with data.open("w", encoding="ascii") as f:
        for p in pool.pushes:
            f.write(f"{p.app} {p.sha} {p.delivery_id} {p.signature_256} {p.signature_1}\n")
    script = workdir / "pushes.lua"
    script.write_text(WRK_SCRIPT % {
        "data": lua_string(str(data)),
        "templates": ", ".join(lua_string(str(p)) for p in template_paths),
        "marker": lua_string(SHA_MARKER),
        "threads": threads,
    })
    return script


@dataclass
class ThroughputResult:
    requests: int
    seconds: float
    requests_per_second: float
    accepted_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_202: int
    status_200: int
    status_other: int
    socket_errors: int
    #: Requests sent after the pool wrapped around (duplicates): must be 0 for a valid run.
    wrapped: int


def run_wrk(url: str, script: Path, connections: int, duration: float, threads: int) -> ThroughputResult:
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
            "--timeout", f"{REQUEST_TIMEOUT_SECONDS:g}s", "-s", str(script), url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    return ThroughputResult(
        requests=raw["requests"],
        seconds=seconds,
        requests_per_second=raw["requests"] / seconds,
        accepted_per_second=raw["status_202"] / seconds,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        status_202=raw["status_202"],
        status_200=raw["status_200"],
        status_other=raw["status_other"],
        socket_errors=raw["errors_connect"] + raw["errors_read"] + raw["errors_write"] + raw["errors_timeout"],
        wrapped=raw["wrapped"],
    )


# -- the constant-rate client ---------------------------------------------------------------------


@dataclass
class RateResult:
    target_rate: float
    sent: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_202: int
    status_200: int
    status_other: int
    timeouts: int
    errors: int
    #: How late the client itself sent (p99, ms): large values mean the client, not the server, lagged.
    send_lag_p99_ms: float
    reconnects: int = 0


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened when the server closed it between requests."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, raw: bytes) -> int:
        """Send one request, read the whole response; the status code."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        await self.reader.readexactly(int(match.group(1)) if match else 0)
        if re.search(rb"(?im)^connection:\s*close", head):
            self.close()
        return status


async def _constant_rate(
    pool: RequestPool, port: int, rate: float, duration: float, connections: int
) -> RateResult:
    host = f"127.0.0.1:{port}"
    count = int(rate * duration)
    raws = [pool.raw_request(p, host) for p in pool.pushes[:count]]
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        conn = Connection("127.0.0.1", port)
        await conn.open()
        idle.put_nowait(conn)
    latencies: list[float] = []
    lags: list[float] = []
    statuses: dict[int, int] = {}
    errors = reconnects = 0

    async def send(raw: bytes, scheduled: float) -> None:
        nonlocal errors, reconnects
        conn = await idle.get()  # waiting for a free connection counts: it is time since `scheduled`
        lags.append(time.perf_counter() - scheduled)
        try:
            try:
                status = await conn.exchange(raw)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                # The server may close an idle keep-alive connection just as we reuse it: nothing
                # was answered, so send once more on a fresh connection (a processed first attempt
                # would show up as a 200 duplicate, not go unnoticed).
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
                conn.close()
                reconnects += 1
                status = await conn.exchange(raw)
            latencies.append(time.perf_counter() - scheduled)
            statuses[status] = statuses.get(status, 0) + 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            conn.close()
            errors += 1
        finally:
            idle.put_nowait(conn)

    tasks = []
    start = time.perf_counter() + 0.05
    for i, raw in enumerate(raws):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(raw, scheduled)))
    _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_SECONDS)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().close()
    ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    return RateResult(
        target_rate=rate,
        sent=count,
        seconds=elapsed,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        max_ms=ms[-1],
        status_202=statuses.get(202, 0),
        status_200=statuses.get(200, 0),
        status_other=sum(n for s, n in statuses.items() if s not in (200, 202)),
        timeouts=len(pending),
        errors=errors,
        send_lag_p99_ms=percentile(sorted(x * 1000 for x in lags) or [0.0], 99),
        reconnects=reconnects,
    )


def run_constant_rate(pool: RequestPool, port: int, rate: float, duration: float, connections: int) -> RateResult:
    return asyncio.run(_constant_rate(pool, port, rate, duration, connections))


async def _warm_up(pool: RequestPool, port: int, count: int, concurrency: int) -> None:
    host = f"127.0.0.1:{port}"
    conns = [Connection("127.0.0.1", port) for _ in range(concurrency)]

    async def worker(conn: Connection, pushes: Sequence[SignedPush]) -> None:
        for p in pushes:
            await conn.exchange(pool.raw_request(p, host))
        conn.close()

    pushes = pool.pushes[-count:]
    await asyncio.gather(*(worker(c, pushes[k::concurrency]) for k, c in enumerate(conns)))


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


# -- processes: redis-server, the two gunicorns ---------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def private_redis(workdir: Path) -> Iterator[redis.Redis]:
    """A redis-server of our own, persisting as the docker-compose setup does (AOF, fsync every second).

    Automatic AOF rewrites are off: the fork would land in whichever phase happens to cross the
    size threshold and make that server look slower.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/setup installs it)")
    port = free_port()
    data_dir = workdir / "redis"
    data_dir.mkdir()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--appendfsync", "everysec", "--auto-aof-rewrite-percentage", "0", "--dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
    )
    conn = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield conn
    finally:
        conn.close()
        proc.terminate()
        proc.wait(timeout=10)


def write_config(workdir: Path, apps: list[BenchApp], redis_url: str) -> Path:
    # `serve --bind` picks the port; listen and public_url only have to be valid.
    text = textwrap.dedent(f"""\
        [server]
        listen = "127.0.0.1:8080"
        public_url = "http://127.0.0.1:8080"

        [redis]
        url = "{redis_url}"

        [worker]
        state_dir = "{workdir / 'state'}"

        [hosts.github]
        kind = "github"
        api_url = "http://127.0.0.1:9/github"
        token_env = "BENCH_GITHUB_TOKEN"
    """)
    for app in apps:
        text += textwrap.dedent(f"""
            [apps.{app.name}]
            host = "github"
            repo = "{app.repo}"
            clone_url = "{workdir / (app.name + '.git')}"
            branch = "main"
            secret_env = "{app.secret_env}"
        """)
    path = workdir / "hooksvc.toml"
    path.write_text(text)
    return path


def server_env(apps: list[BenchApp], redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKSVC_", "REDIS_"))}
    env.update({a.secret_env: a.secret for a in apps})
    env.update({
        "BENCH_GITHUB_TOKEN": "bench-token",
        "HOOKSVC_API_TOKENS": "bench-operator-token",
        "REDIS_URL": redis_url,
        "BENCH_BARE_SECRETS": ",".join(a.secret for a in apps),
        "PYTHONPATH": str(REPO_ROOT),
    })
    return env


def start_hooksvc(config: Path, env: dict[str, str], workdir: Path, processes: int, threads: int) -> Server:
    port = free_port()
    log = workdir / "hooksvc.log"
    argv = [str(VENV_BIN / "hooksvc"), "--config", str(config), "serve", "--bind", f"127.0.0.1:{port}",
            "--processes", str(processes), "--threads", str(threads)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Server("hooksvc", port, proc, log)


#: The bare handler's gunicorn worker class by default: the server model hooksvc serve runs.
BARE_WORKER_CLASS = "hooksvc.runtime.web.WaitressWorker"


def start_bare(env: dict[str, str], workdir: Path, processes: int, threads: int,
               worker_class: str = BARE_WORKER_CLASS) -> Server:
    port = free_port()
    log = workdir / "bare.log"
    # The server model and settings `hooksvc serve` gives gunicorn (hooksvc/runtime/web.py: waitress in
    # each worker, its read timeout and limits as class defaults), and nothing more.
    argv = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(processes),
            "--worker-class", worker_class, "--threads", str(threads),
            "--worker-connections", str(WEB_CONNECTIONS), "--chdir", str(BENCH_DIR), "bare_app:create_app()"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Server("bare", port, proc, log)


def wait_until_serving(server: Server, processes: int) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{tail(server.log)}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2).close()
        except urllib.error.HTTPError:
            pass  # the bare app has no /healthz: a 404 means it answers
        except OSError:
            time.sleep(0.1)
            continue
        if len(child_pids(server.proc.pid)) >= processes:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not start within {SERVER_START_TIMEOUT_SECONDS:g} s:\n{tail(server.log)}")


def stop(server: Server) -> None:
    """Stop gunicorn gracefully, then make sure none of its workers outlives it.

    SIGTERM, not SIGINT: SIGTERM is gunicorn's graceful stop. On SIGINT the master sends its
    workers SIGQUIT; a gthread worker (what both servers ran before waitress) once got SIGQUIT
    inside `ThreadPoolExecutor.submit` and deadlocked in its own signal handler, and lived on as an
    orphan after the master was killed.
    """
    workers = child_pids(server.proc.pid)
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=SERVER_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)
    for pid in workers:
        # A worker still alive now is an orphan of ours: forked from the master, it has the
        # master's command line, with our port in it (checked, so a reused pid is left alone).
        with suppress(OSError):
            if f"127.0.0.1:{server.port}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 30) -> str:
    with suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def child_pids(pid: int) -> list[int]:
    with suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


@dataclass
class ProcessMemory:
    pid: int
    role: str
    rss_mb: float
    peak_rss_mb: float


def memory_of(pid: int, role: str) -> ProcessMemory:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return ProcessMemory(pid=pid, role=role, rss_mb=int(fields["VmRSS"].split()[0]) / 1024,
                         peak_rss_mb=int(fields["VmHWM"].split()[0]) / 1024)


def server_memory(server: Server) -> list[ProcessMemory]:
    return [memory_of(server.proc.pid, "master")] + [memory_of(p, "worker") for p in child_pids(server.proc.pid)]


# -- the run --------------------------------------------------------------------------------------


@dataclass
class PhaseContext:
    """What explains a phase's numbers: machine load, CPU spent per answer, Redis work per answer."""

    load_1min: float
    #: CPU time of the server's worker processes per 202 (user + system).
    worker_cpu_ms_per_request: float
    redis_cpu_ms_per_request: float
    #: Redis commands per 202, by command (those issued at least once per ten requests).
    redis_calls_per_request: dict[str, float]
    #: AOF writes Redis had to delay because an fsync was still running: a busy disk, not the server.
    aof_delayed_fsync: int


@dataclass
class Round:
    order: list[str]
    throughput: dict[str, ThroughputResult] = field(default_factory=dict)
    rate: dict[str, RateResult] = field(default_factory=dict)
    #: What Redis holds after each throughput phase: deployments hooksvc recorded, bodies the bare app pushed.
    recorded: dict[str, int] = field(default_factory=dict)
    #: `context[phase][server]`, phase "throughput" or "rate".
    context: dict[str, dict[str, PhaseContext]] = field(default_factory=lambda: {"throughput": {}, "rate": {}})

    @property
    def ratio(self) -> float:
        return self.throughput["hooksvc"].accepted_per_second / self.throughput["bare"].accepted_per_second


def recorded_count(conn: redis.Redis, name: str) -> int:
    if name == "bare":
        return int(conn.llen("bench:bare:deliveries"))
    return int(conn.get("hooksvc:deployment:next") or 0)


def cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/<pid>/stat (utime, stime), counted after the parenthesised name.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(conn: redis.Redis) -> float:
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@contextmanager
def observed(conn: redis.Redis, server: Server, accepted: list[int], into: dict[str, PhaseContext]) -> Iterator[None]:
    """Start a phase on an empty Redis and record its PhaseContext once `accepted[0]` holds its 202 count."""
    # Settle first: requests still in flight when the last phase's wrk exited must land before the
    # flush, or their dedupe records make the same pushes duplicates (200s) in the next phase.
    time.sleep(SETTLE_SECONDS)
    conn.flushall()
    conn.config_resetstat()
    workers = child_pids(server.proc.pid)
    cpu_before = sum(cpu_seconds(p) for p in workers)
    redis_before = redis_cpu_seconds(conn)
    delayed_before = int(conn.info("persistence")["aof_delayed_fsync"])
    load = os.getloadavg()[0]
    yield
    n = max(1, accepted[0])
    calls = {k.removeprefix("cmdstat_"): v["calls"] / n for k, v in conn.info("commandstats").items()}
    into[server.name] = PhaseContext(
        load_1min=load,
        worker_cpu_ms_per_request=1000 * (sum(cpu_seconds(p) for p in workers) - cpu_before) / n,
        redis_cpu_ms_per_request=1000 * (redis_cpu_seconds(conn) - redis_before) / n,
        redis_calls_per_request={k: round(v, 2) for k, v in sorted(calls.items()) if v >= 0.1},
        aof_delayed_fsync=int(conn.info("persistence")["aof_delayed_fsync"]) - delayed_before,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    apps = make_apps(args.apps)
    pool_size = max(int(POOL_PER_SECOND * args.duration), int(args.rate * args.rate_duration), WARMUP_REQUESTS)
    started = time.monotonic()
    pool = make_pool(apps, pool_size)
    print(f"prepared {pool_size} signed pushes over {len(apps)} apps in {time.monotonic() - started:.1f} s",
          flush=True)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp, private_redis(Path(tmp)) as conn:
        workdir = Path(tmp)
        redis_url = f"redis://127.0.0.1:{conn.connection_pool.connection_kwargs['port']}/0"
        script = write_wrk_script(pool, workdir, WRK_THREADS)
        env = server_env(apps, redis_url)
        config_path = write_config(workdir, apps, redis_url)
        parse_config(config_path.read_text(), str(config_path), env)  # fail here, not in a server log
        servers = {"bare": start_bare(env, workdir, args.processes, args.threads, args.bare_worker_class),
                   "hooksvc": start_hooksvc(config_path, env, workdir, args.processes, args.threads)}
        try:
            for server in servers.values():
                wait_until_serving(server, args.processes)
                asyncio.run(_warm_up(pool, server.port, WARMUP_REQUESTS, 16))
            for r in range(args.rounds):
                # Alternate who goes first: the machine is shared, so drift should not favour one side.
                order = ["bare", "hooksvc"] if r % 2 == 0 else ["hooksvc", "bare"]
                rnd = Round(order=order)
                for name in order:
                    server, accepted = servers[name], [0]
                    with observed(conn, server, accepted, rnd.context["throughput"]):
                        url = f"http://127.0.0.1:{server.port}/hooks/github"
                        rnd.throughput[name] = run_wrk(url, script, args.connections, args.duration, WRK_THREADS)
                        accepted[0] = rnd.throughput[name].status_202
                    rnd.recorded[name] = recorded_count(conn, name)
                    print(f"round {r + 1} throughput {name}: {rnd.throughput[name].requests_per_second:.0f} req/s",
                          flush=True)
                for name in order if r < args.rate_rounds else ():
                    server, accepted = servers[name], [0]
                    with observed(conn, server, accepted, rnd.context["rate"]):
                        rnd.rate[name] = run_constant_rate(
                            pool, server.port, args.rate, args.rate_duration, args.connections)
                        accepted[0] = rnd.rate[name].status_202
                    print(f"round {r + 1} {args.rate:g}/s {name}: p99 {rnd.rate[name].p99_ms:.1f} ms", flush=True)
                rounds.append(rnd)
            memory = {name: server_memory(s) for name, s in servers.items()}
        finally:
            for server in servers.values():
                stop(server)
        for server in servers.values():
            # A traceback in a server log explains a non-202 answer better than its count does.
            if "Traceback" in server.log.read_text(errors="replace"):
                print(f"--- {server.name} log shows errors:\n{tail(server.log)}", file=sys.stderr)
    return report(args, rounds, memory, pool_size, time.monotonic() - started)


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def tool_version(argv: list[str]) -> str:
    with suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    return "unknown"


def report(
    args: argparse.Namespace, rounds: list[Round], memory: dict[str, list[ProcessMemory]],
    pool_size: int, seconds: float,
) -> dict[str, Any]:
    names = ("hooksvc", "bare")
    summary: dict[str, Any] = {
        "throughput_rps": {n: spread([r.throughput[n].accepted_per_second for r in rounds]) for n in names},
        "throughput_p50_ms": {n: spread([r.throughput[n].p50_ms for r in rounds]) for n in names},
        "throughput_p99_ms": {n: spread([r.throughput[n].p99_ms for r in rounds]) for n in names},
        "throughput_ratio": spread([r.ratio for r in rounds]),
        "throughput_cpu_ms_per_request": {
            n: spread([r.context["throughput"][n].worker_cpu_ms_per_request for r in rounds]) for n in names},
        "rate_p50_ms": {n: spread([r.rate[n].p50_ms for r in rounds if r.rate]) for n in names},
        "rate_p99_ms": {n: spread([r.rate[n].p99_ms for r in rounds if r.rate]) for n in names},
    }
    max_rss = max(m.rss_mb for m in memory["hooksvc"])
    targets = [
        {"target": f"throughput ≥ {MIN_THROUGHPUT_RATIO}× bare (median ratio)",
         "value": summary["throughput_ratio"]["median"], "met": summary["throughput_ratio"]["median"]
         >= MIN_THROUGHPUT_RATIO},
        {"target": f"p99 < {MAX_P99_MS_AT_RATE:g} ms at {args.rate:g} req/s (median p99)",
         "value": summary["rate_p99_ms"]["hooksvc"]["median"],
         "met": summary["rate_p99_ms"]["hooksvc"]["median"] < MAX_P99_MS_AT_RATE},
        {"target": f"every web process RSS < {MAX_PROCESS_RSS_MB:g} MB",
         "value": max_rss, "met": max_rss < MAX_PROCESS_RSS_MB},
    ]
    problems = []
    for r in rounds:
        for n in names:
            t, c = r.throughput[n], r.rate.get(n)
            if t.wrapped:
                problems.append(f"{n}: the request pool wrapped ({t.wrapped} duplicates sent); raise POOL_PER_SECOND")
            if t.status_200 or t.status_other or t.socket_errors:
                problems.append(f"{n} under wrk: {t.status_200} × 200, {t.status_other} other, "
                                f"{t.socket_errors} socket errors (want only 202)")
            if c is not None and c.status_202 != c.sent:
                problems.append(
                    f"{n} at {args.rate:g}/s: {c.status_202} of {c.sent} answered 202 ({c.status_200} × 200, "
                    f"{c.status_other} other, {c.timeouts} timeouts, {c.errors} errors)")
    return {
        "benchmark": "webhook intake: signed GitHub push -> 202",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_after": os.getloadavg(), "python": platform.python_version(),
                    "wrk": tool_version(["wrk", "--version"]), "redis": tool_version(["redis-server", "--version"])},
        "settings": {"processes": args.processes, "threads": args.threads, "connections": args.connections,
                     "duration_s": args.duration, "rate_per_s": args.rate, "rate_duration_s": args.rate_duration,
                     "apps": args.apps, "rounds": args.rounds, "rate_rounds": args.rate_rounds,
                     "wrk_threads": WRK_THREADS, "pool": pool_size},
        "rounds": [{"order": r.order, "ratio": r.ratio, "recorded": r.recorded,
                    "throughput": {n: asdict(v) for n, v in r.throughput.items()},
                    "rate": {n: asdict(v) for n, v in r.rate.items()},
                    "context": {phase: {n: asdict(c) for n, c in ctx.items()} for phase, ctx in r.context.items()}}
                   for r in rounds],
        "summary": summary,
        "memory_after_load": {n: [asdict(m) for m in ms] for n, ms in memory.items()},
        "targets": targets,
        "problems": problems,
        "seconds": seconds,
    }


def print_table(result: dict[str, Any]) -> None:
    s = result["summary"]
    settings = result["settings"]

    def cell(d: dict[str, float], fmt: str) -> str:
        text = format(d["median"], fmt)
        return text if d["min"] == d["max"] else f"{text} ({format(d['min'], fmt)}–{format(d['max'], fmt)})"

    print()
    print(f"wrk, {settings['connections']} connections, {settings['duration_s']:g} s; "
          f"{settings['rate_per_s']:g} req/s for {settings['rate_duration_s']:g} s; "
          f"gunicorn + waitress {settings['processes']}×{settings['threads']}; median (min–max) of "
          f"{settings['rounds']} round(s), latency of {settings['rate_rounds']}")
    rows = [["", "202/s", "p50 ms", "p99 ms", "CPU ms/req", f"p50 ms @{settings['rate_per_s']:g}/s",
             f"p99 ms @{settings['rate_per_s']:g}/s"]]
    for n in ("hooksvc", "bare"):
        rows.append([n, cell(s["throughput_rps"][n], ".0f"), cell(s["throughput_p50_ms"][n], ".1f"),
                     cell(s["throughput_p99_ms"][n], ".1f"), cell(s["throughput_cpu_ms_per_request"][n], ".2f"),
                     cell(s["rate_p50_ms"][n], ".1f"), cell(s["rate_p99_ms"][n], ".1f")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"throughput ratio hooksvc/bare: {cell(s['throughput_ratio'], '.2f')}")
    loads = [c["load_1min"] for r in result["rounds"] for phase in r["context"].values() for c in phase.values()]
    cpus = result["machine"]["cpus"]
    print(f"machine load (1 min) at phase starts: {min(loads):.1f}–{max(loads):.1f} on {cpus} CPUs")
    for n, procs in result["memory_after_load"].items():
        text = ", ".join(f"{m['role']} {m['rss_mb']:.1f} MB (peak {m['peak_rss_mb']:.1f})" for m in procs)
        print(f"RSS {n}: {text}")
    print()
    for t in result["targets"]:
        print(f"{'met   ' if t['met'] else 'MISSED'} {t['target']}: {t['value']:.2f}")
    for p in result["problems"]:
        print(f"INVALID {p}")
    print(f"({result['seconds']:.0f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-check", action="store_true", help="report only; exit 0 even if a target is missed")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="repeat both measurements; report median and range")
    parser.add_argument("--duration", type=float, default=DURATION_SECONDS, help="seconds of wrk per server")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--rate", type=float, default=RATE_PER_SECOND, help="requests/s of the latency run")
    parser.add_argument("--rate-duration", type=float, default=RATE_DURATION_SECONDS)
    parser.add_argument("--rate-rounds", type=int, default=RATE_ROUNDS, help="rounds that run the latency phase")
    parser.add_argument("--apps", type=int, default=APPS, help="apps (repositories) the pushes rotate over")
    parser.add_argument("--processes", type=int, default=WEB_PROCESSES, help="gunicorn workers, both servers")
    parser.add_argument("--threads", type=int, default=WEB_THREADS, help="threads per worker, both servers")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--bare-worker-class", default=BARE_WORKER_CLASS,
                        help="gunicorn worker class of the bare handler (gthread: the reference before waitress)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_webhooks: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    result = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"results: {args.json}")
    if result["problems"]:
        return 2
    if not args.no_check and not all(t["met"] for t in result["targets"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
