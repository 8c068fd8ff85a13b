"""`hooksvc serve` (a real process, default processes and threads, real Redis) against an attacker.

Each test does what an attacker did to the server as shipped (docs/security.md): anonymous
readers holding log streams under `public_read`, cursors past 64 bits, unthrottled token guesses,
a cookie replayed after logout, unsigned form bodies of percent-escapes, half-sent large bodies.
Clients come from addresses of their own on the loopback network (127.0.0.2, 127.0.0.3, ...), as
they would from the internet.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from hooksvc import defaults, keys
from hooksvc.deployments import NewDeployment, Trigger
from hooksvc.store import DeploymentStore
from hooksvc.web.stream_slots import slots_for
from tests.helpers.config import TEST_REDIS_URL, write_config
from tests.helpers.payloads import commit_sha, gitea_push, gitea_request, github_push, github_request
from tests.helpers.redis_server import free_port
from tests.helpers.serve import ServeProcess, serve_process

SECRET = "shop-webhook-secret"
BLOG_SECRET = "blog-webhook-secret"
TOKEN = "hostile-test-operator-token"
#: docs/contract.md: a webhook is answered well under a second.
ANSWER_SECONDS = 1.0
#: The attack of issue 20 used 40 and 64; the defence is measured with 100.
FOLLOWERS = 100
#: How long the followers keep at it while pushes and /healthz are timed.
ATTACK_SECONDS = 8.0
#: The shortest time a git host waits for an answer (GitHub: 10 s, Gitea and GitLab: 5-10 s).
HOST_TIMEOUT_SECONDS = 5.0
GITEA_APP = """
    [hosts.gitea]
    kind = "gitea"
    api_url = "http://127.0.0.1:9/gitea"
    [apps.blog]
    host = "gitea"
    repo = "acme/blog"
    clone_url = "/srv/git/blog.git"
    tags = "v*"
    secret_env = "BLOG_SECRET"
"""
ENV = {"SHOP_SECRET": SECRET, "BLOG_SECRET": BLOG_SECRET, "HOOKSVC_API_TOKENS": TOKEN}


def address(n: int) -> str:
    """The n-th client's own loopback address (127.0.0.1 is left to the tests' own requests)."""
    return f"127.0.{n // 250}.{n % 250 + 2}"


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`hooksvc serve` with `public_read = true`: anyone may read deployments and follow their logs."""
    tmp_path = tmp_path_factory.mktemp("public")
    port = free_port()
    config = write_config(tmp_path, TEST_REDIS_URL, port=port, server="public_read = true", extra=GITEA_APP)
    with serve_process(config, port, ENV) as server:
        yield server


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`hooksvc serve` without `public_read`: the pages need a token or a login."""
    tmp_path = tmp_path_factory.mktemp("private")
    port = free_port()
    config = write_config(tmp_path, TEST_REDIS_URL, port=port)
    with serve_process(config, port, ENV) as server:
        yield server


def request(server: ServeProcess, method: str, path: str, *, source: str = "127.0.0.1", body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes, float]:
    """One request from `source` on a fresh connection: status, headers, body, seconds until the whole answer."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data, time.monotonic() - started
    finally:
        conn.close()


def quantile_90(times: list[float]) -> float:
    return statistics.quantiles(times, n=10)[-1]


def waiting_deployment(store: DeploymentStore) -> tuple[str, str]:
    """A queued deployment of `blog` that stays queued during the test (no worker runs, and the pushes
    are `shop`'s), and its log cursor."""
    dep = store.intake.submit([NewDeployment("blog", "a" * 40, "refs/tags/v1.0.0", Trigger.PUSH)]).deployments[0]
    _, cursor = store.logs.read(dep.id)
    return dep.id, cursor


@dataclass
class Followers:
    """Anonymous readers that keep a followed log or a long-poll open each, from addresses of their own.

    They run in a process of their own (an attacker's machine: their threads do not slow the
    test's own requests). Each asks again as soon as its request ends, or after the Retry-After of
    a refusal (at most 1 s: an attacker is impatient). Odd ones follow the API's stream, even ones
    long-poll the page's log.json.
    """

    server: ServeProcess
    deployment_id: str
    cursor: str
    count: int
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    streams_open: int = 0
    result: dict[str, Any] = field(default_factory=lambda: {
        "most_streams_open": 0, "served": 0, "refusals": {}, "retry_after": set(), "errors": []})

    def path(self, n: int) -> str:
        if n % 2:
            return f"/api/deployments/{self.deployment_id}/log?follow=1"
        return f"/deployments/{self.deployment_id}/log.json?wait=1&after={self.cursor}"

    def follow(self, n: int) -> None:
        result = self.result
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30,
                                              source_address=(address(n), 0))
            try:
                conn.request("GET", self.path(n))
                response = conn.getresponse()
                if response.status == 200:
                    with self.lock:
                        result["served"] += 1
                        if n % 2:
                            self.streams_open += 1
                            result["most_streams_open"] = max(result["most_streams_open"], self.streams_open)
                    try:
                        while not self.stop.is_set() and response.read(64):
                            pass
                    finally:
                        if n % 2:
                            with self.lock:
                                self.streams_open -= 1
                    continue
                refusal = response.read()
                retry_after = response.getheader("Retry-After") or ""
                with self.lock:
                    result["refusals"][response.status] = result["refusals"].get(response.status, 0) + 1
                    result["retry_after"].add(retry_after)
                    if not retry_after:
                        result["errors"].append(f"{response.status} without Retry-After: {refusal[:200]!r}")
                self.stop.wait(min(1.0, float(retry_after or 1)))
            except OSError as exc:
                if not self.stop.is_set():
                    result["errors"].append(repr(exc))
                    self.stop.wait(0.5)
            finally:
                conn.close()

    def attack(self, done: Any, report: Any) -> None:
        """The attacker's process: every follower in a thread until `done` is set, then the result."""
        threads = [threading.Thread(target=self.follow, args=(n,), daemon=True) for n in range(self.count)]
        for thread in threads:
            thread.start()
        done.wait()
        self.stop.set()
        for thread in threads:
            thread.join(timeout=40)
        report.send(self.result)

    def __enter__(self) -> Followers:
        context = multiprocessing.get_context("fork")
        self.done = context.Event()
        self.report, child_end = context.Pipe(duplex=False)
        self.process = context.Process(target=self.attack, args=(self.done, child_end), daemon=True)
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.report.poll(60):
            self.result = self.report.recv()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class TestLongRequests:
    @pytest.fixture(autouse=True)
    def followers_left(self) -> None:
        """Readers of an earlier test have gone: the server notices a closed connection within a poll (1 s)."""
        time.sleep(2)

    def test_100_followers_never_delay_webhooks_or_healthz(
        self, public: ServeProcess, store: DeploymentStore,
    ) -> None:
        """With 100 anonymous readers following a log from 100 addresses, signed pushes get 202 and
        /healthz 200 at once, and no more streams are served than the processes' stream slots."""
        dep_id, cursor = waiting_deployment(store)
        pushes: list[float] = []
        health: list[float] = []
        with Followers(public, dep_id, cursor, FOLLOWERS) as followers:
            time.sleep(2)  # every follower has asked at least once
            n = 0
            deadline = time.monotonic() + ATTACK_SECONDS
            while time.monotonic() < deadline:
                hook = github_request(github_push(after=commit_sha(1000 + n)), SECRET)
                status, _, body, seconds = request(public, "POST", "/hooks/github", body=hook.body,
                                                   headers=hook.headers)
                assert status == 202, body
                pushes.append(seconds)
                status, _, _, seconds = request(public, "GET", "/healthz")
                assert status == 200
                health.append(seconds)
                n += 1
                time.sleep(0.1)
        result = followers.result
        summary = {name: (round(statistics.median(times), 3), round(quantile_90(times), 3), round(max(times), 3))
                   for name, times in (("push", pushes), ("healthz", health))}
        print(f"\n{FOLLOWERS} followers, {len(pushes)} pushes and /healthz (median, p90, max seconds): {summary}; "
              f"{result['served']} long requests served, at most {result['most_streams_open']} streams at once, "
              f"refusals {result['refusals']}")
        for name, times in (("push", pushes), ("/healthz", health)):
            # The p90 holds the contract on this shared 2-core machine; the slowest must still beat the
            # git host's timeout (as shipped, a push waited 30 s).
            assert quantile_90(times) < ANSWER_SECONDS, f"{name}: {summary}"
            assert max(times) < HOST_TIMEOUT_SECONDS, f"{name}: {summary}"
        assert result["served"] >= 1
        assert result["most_streams_open"] <= defaults.WEB_PROCESSES * slots_for(defaults.WEB_THREADS)
        assert result["refusals"].get(503, 0) > FOLLOWERS, result["refusals"]
        assert result["errors"] == []
        assert result["retry_after"] == {str(defaults.STREAM_RETRY_AFTER_SECONDS)}

    def test_one_address_gets_its_share_then_429_but_an_operator_still_follows(
        self, public: ServeProcess, store: DeploymentStore,
    ) -> None:
        """One anonymous address holds at most its share of streams in each web process (the rest get
        429 with Retry-After); an operator's bearer token from the same address is not held to it."""
        dep_id, _ = waiting_deployment(store)
        source = address(400)
        held: list[http.client.HTTPConnection] = []
        statuses: list[int] = []
        try:
            for _ in range(3 * defaults.WEB_PROCESSES * defaults.STREAMS_PER_CLIENT):
                conn = http.client.HTTPConnection("127.0.0.1", public.port, timeout=10, source_address=(source, 0))
                conn.request("GET", f"/api/deployments/{dep_id}/log?follow=1")
                response = conn.getresponse()
                statuses.append(response.status)
                if response.status == 200:
                    assert response.readline().startswith(b"queued push of ")
                    held.append(conn)
                else:
                    assert response.status == 429, response.read()
                    assert response.getheader("Retry-After") == str(defaults.STREAM_RETRY_AFTER_SECONDS)
                    assert b"this address already follows" in response.read()
                    conn.close()
            served = statuses.count(200)
            assert defaults.STREAMS_PER_CLIENT <= served <= defaults.WEB_PROCESSES * defaults.STREAMS_PER_CLIENT
            assert statuses.count(429) == len(statuses) - served
            status, _, body, _ = request(public, "GET", f"/api/deployments/{dep_id}/log", source=source,
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            assert status == 200 and body.startswith(b"queued push of ")
            conn = http.client.HTTPConnection("127.0.0.1", public.port, timeout=10, source_address=(source, 0))
            conn.request("GET", f"/api/deployments/{dep_id}/log?follow=1", headers={"Authorization": f"Bearer {TOKEN}"})
            assert conn.getresponse().status == 200
            held.append(conn)
        finally:
            for conn in held:
                conn.close()

    def test_cursor_past_64_bits_is_a_400_not_a_500(self, public: ServeProcess, store: DeploymentStore) -> None:
        """An anonymous log.json with an `after` Redis cannot read is the client's 400, with no traceback logged."""
        dep_id, _ = waiting_deployment(store)
        for cursor in ("99999999999999999999-0", "0-18446744073709551616", "1-2-3", "-1-0"):
            status, _, body, _ = request(public, "GET", f"/deployments/{dep_id}/log.json?after={cursor}")
            assert status == 400, (cursor, body)
            assert "'after' must be a log cursor" in json.loads(body)["error"]
        status, _, body, _ = request(public, "GET", f"/deployments/{dep_id}/log.json?after=18446744073709551615-0")
        assert status == 200 and json.loads(body)["lines"] == []
        assert "Traceback" not in public.log.read_text(errors="replace")


def escaped_form(size: int) -> bytes:
    """A form body of `size` bytes whose `payload` is all percent-escapes: the most decoding per byte."""
    return b"payload=" + b"%7B" * ((size - 8) // 3)


class TestUnsignedBodies:
    REQUESTS = 4

    def cpu_per_refusal(self, server: ServeProcess, path: str, body: bytes, headers: dict[str, str]) -> float:
        """Web workers' CPU seconds per refused request (each on its own address, as a spread-out sender)."""
        before = server.worker_cpu_seconds()
        for n in range(self.REQUESTS):
            status, _, answer, _ = request(server, "POST", path, source=address(500 + n), body=body, headers=headers,
                                           timeout=30)
            assert status == 401, answer
        return (server.worker_cpu_seconds() - before) / self.REQUESTS

    def test_unsigned_5_mib_form_costs_no_more_than_json_to_refuse(
        self, public: ServeProcess, redis: redis_lib.Redis,
    ) -> None:
        """A 5 MiB form body of escapes with a forged signature is refused (401) at about a JSON body's CPU cost,
        for GitHub (verified as sent, never decoded) and Gitea (decoded to verify, in C)."""
        size = defaults.MAX_BODY_BYTES - 1024
        form = escaped_form(size)
        json_body = b'{"pad": "' + b"x" * (size - 12) + b'"}'
        results = {}
        for route, make in (("github", github_request), ("gitea", gitea_request)):
            forged = make(gitea_push() if route == "gitea" else github_push(), "forged-secret")
            form_headers = {**forged.headers, "Content-Type": "application/x-www-form-urlencoded"}
            json_headers = {**forged.headers, "Content-Type": "application/json"}
            results[route] = (self.cpu_per_refusal(public, f"/hooks/{route}", json_body, json_headers),
                              self.cpu_per_refusal(public, f"/hooks/{route}", form, form_headers))
        print(f"\nCPU per refused 5 MiB body (JSON, form): {results}")
        for route, (json_cpu, form_cpu) in results.items():
            # A CPU tick is 10 ms; the old decoding cost 600 ms and more per request.
            assert form_cpu <= 2 * json_cpu + 0.05, f"{route}: form {form_cpu:.3f} s, JSON {json_cpu:.3f} s"


def spooled_bytes(server: ServeProcess) -> int:
    """Bytes in the temporary files (deleted, still open) the web workers hold: spooled request bodies."""
    total = 0
    for pid in server.worker_pids():
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in os.listdir(fd_dir):
            with suppress(OSError):
                if os.readlink(fd_dir / fd).endswith("(deleted)"):
                    total += os.stat(fd_dir / fd).st_size
    return total


class TestHalfSentBodies:
    SENDERS = 40
    SENT_BYTES = 1024 * 1024

    def test_40_half_sent_5_mib_bodies_spool_a_bounded_amount(
        self, public: ServeProcess, redis: redis_lib.Redis,
    ) -> None:
        """40 senders each announcing 5 MiB and sending 1 MiB get a 503 with Retry-After beyond the spool
        budget; what the workers spool stays under it, and a signed push still gets 202 at once."""
        declared = defaults.MAX_BODY_BYTES
        head = (b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % declared)
        sockets: list[socket.socket] = []
        refused = 0
        try:
            for n in range(self.SENDERS):
                sock = socket.create_connection(("127.0.0.1", public.port), timeout=5,
                                                source_address=(address(600 + n), 0))
                sockets.append(sock)
                sock.sendall(head)
                with suppress(OSError):  # refused and closed while the body was on its way
                    sock.sendall(b" " * self.SENT_BYTES)
                sock.settimeout(0.5)
                with suppress(TimeoutError, OSError):
                    answer = sock.recv(4096)
                    if answer.startswith(b"HTTP/1.1 503 "):
                        assert b"Retry-After: " in answer
                        refused += 1
            time.sleep(0.5)
            spooled = spooled_bytes(public)
            budget = defaults.WEB_PROCESSES * defaults.WEB_SPOOL_BYTES
            print(f"\n{self.SENDERS} half-sent bodies: {refused} refused with 503, {spooled / 2**20:.1f} MiB spooled")
            kept = defaults.WEB_PROCESSES * (defaults.WEB_SPOOL_BYTES // (declared + 1))
            assert refused >= self.SENDERS - kept
            assert spooled <= budget
            assert spooled <= kept * self.SENT_BYTES + 2**20
            hook = github_request(github_push(after=commit_sha(77)), SECRET)
            status, _, body, seconds = request(public, "POST", "/hooks/github", body=hook.body, headers=hook.headers)
            assert status == 202 and seconds < ANSWER_SECONDS, (status, body, seconds)
        finally:
            for sock in sockets:
                sock.close()

    def test_one_address_spools_at_most_its_share(self, public: ServeProcess, redis: redis_lib.Redis) -> None:
        """One address announcing large bodies on many connections gets at most its share in each process."""
        head = (b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n{" % (256 * 1024))
        sockets: list[socket.socket] = []
        answers = []
        try:
            for _ in range(8):
                sock = socket.create_connection(("127.0.0.1", public.port), timeout=5, source_address=(address(700), 0))
                sockets.append(sock)
                sock.sendall(head)
                sock.settimeout(0.5)
                try:
                    answers.append(sock.recv(4096))
                except TimeoutError:
                    answers.append(b"")  # waiting for its body: it holds spool room
            waiting = answers.count(b"")
            share = defaults.WEB_SPOOLING_PER_CLIENT
            assert share <= waiting <= defaults.WEB_PROCESSES * share
            assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers if a)
        finally:
            for sock in sockets:
                sock.close()


def login(server: ServeProcess, token: str, source: str) -> tuple[int, dict[str, str], bytes]:
    form = urllib.parse.urlencode({"token": token, "next": "/"}).encode()
    status, headers, body, _ = request(server, "POST", "/login", source=source, body=form,
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    return status, headers, body


def session_cookie(headers: dict[str, str]) -> str:
    name, _, rest = headers["set-cookie"].partition("=")
    assert name == "hooksvc_session"
    return rest.partition(";")[0]


class TestLogin:
    def test_guesses_from_one_address_are_throttled_and_the_right_token_elsewhere_still_logs_in(
        self, private: ServeProcess, redis: redis_lib.Redis,
    ) -> None:
        """After LOGIN_FAILURES_PER_ADDRESS wrong tokens an address gets 429 with Retry-After, also for the
        right token (it learns nothing more); the right token from another address logs in at once."""
        guesser = address(800)
        for n in range(defaults.LOGIN_FAILURES_PER_ADDRESS):
            assert login(private, f"guess-{n}", guesser)[0] == 401
        started = time.monotonic()
        for n in range(50):
            status, headers, body = login(private, f"guess-more-{n}", guesser)
            assert status == 429, body
            assert 0 < int(headers["retry-after"]) <= defaults.LOGIN_FAILURE_WINDOW_SECONDS
        assert b"Too many wrong tokens" in body
        print(f"\n50 throttled guesses took {time.monotonic() - started:.2f} s, each a 429")
        assert login(private, TOKEN, guesser)[0] == 429
        status, headers, _ = login(private, TOKEN, address(801))
        assert status == 302 and "hooksvc_session=" in headers["set-cookie"]

    def test_bearer_and_basic_guesses_count_too(self, private: ServeProcess, redis: redis_lib.Redis) -> None:
        """The API's bearer token and the pages' basic auth are throttled like the login form."""
        guesser = address(802)
        for n in range(defaults.LOGIN_FAILURES_PER_ADDRESS):
            assert request(private, "GET", "/api/apps", source=guesser,
                           headers={"Authorization": f"Bearer guess-{n}"})[0] == 401
        status, headers, _, _ = request(private, "GET", "/api/apps", source=guesser,
                                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 429 and int(headers["retry-after"]) > 0
        assert request(private, "GET", "/", source=guesser, headers={"Authorization": "Basic Onh4"})[0] == 429
        assert request(private, "GET", "/api/apps", source=address(803),
                       headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200

    def test_one_guess_from_many_addresses_is_throttled_by_token(
        self, private: ServeProcess, redis: redis_lib.Redis,
    ) -> None:
        """The same wrong token from many addresses gets 429 after LOGIN_FAILURES_PER_TOKEN tries; another
        token from the same new address is still checked (401), and the right one logs in."""
        for n in range(defaults.LOGIN_FAILURES_PER_TOKEN):
            assert login(private, "password123", address(810 + n))[0] == 401
        fresh = address(900)
        assert login(private, "password123", fresh)[0] == 429
        assert login(private, "password124", fresh)[0] == 401
        assert login(private, TOKEN, fresh)[0] == 302


class TestSessions:
    def test_a_cookie_replayed_after_logout_opens_nothing(self, private: ServeProcess, redis: redis_lib.Redis) -> None:
        """Logout deletes the session in Redis: the same cookie, sent again, is sent to the login form."""
        source = address(950)
        status, headers, _ = login(private, TOKEN, source)
        assert status == 302
        cookie = {"Cookie": f"hooksvc_session={session_cookie(headers)}"}
        assert request(private, "GET", "/", source=source, headers=cookie)[0] == 200
        status, headers, _, _ = request(private, "POST", "/logout", source=source, headers=cookie)
        assert status == 302 and headers["location"] == "/login"
        status, headers, _, _ = request(private, "GET", "/", source=address(951), headers=cookie)
        assert status == 302 and headers["location"].startswith("/login")

    def test_the_cookie_is_a_random_id_that_says_nothing_about_the_token(
        self, private: ServeProcess, redis: redis_lib.Redis,
    ) -> None:
        """Two logins with the same token get unrelated random ids; Redis keeps a record (operator, when,
        from where) under the id's hash, with nothing in it or in the cookie to test a guessed token against."""
        ids = [session_cookie(login(private, TOKEN, address(960 + n))[1]) for n in range(2)]
        assert ids[0] != ids[1]
        for session_id in ids:
            assert len(session_id) >= 43 and "." not in session_id and TOKEN not in session_id
            record = redis.hgetall(keys.session(hashlib.sha256(session_id.encode()).hexdigest()))
            assert record[b"operator"] == b"token-1" and record[b"address"].startswith(b"127.0.")
            assert TOKEN.encode() not in b"".join(record.values())
            assert 0 < redis.ttl(keys.session(hashlib.sha256(session_id.encode()).hexdigest())) <= \
                defaults.SESSION_LIFETIME_SECONDS
        assert not redis.keys(f"{keys.SESSION_PREFIX}{ids[0]}*")
