"""`hooksvc serve` as operators start it (a real process, default processes and threads) under slow clients.

docs/contract.md, HTTP interface: the answer comes in well under a second. These tests hold the
server to that while hundreds of clients stall, and check that it closes stalled connections
after its read timeout, refuses over-limit bodies without reading them, and still streams.
"""

from __future__ import annotations

import http.client
import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress

import pytest
import redis as redis_lib

from hooksvc.deployments import DeploymentState, NewDeployment, Trigger
from hooksvc.store import DeploymentStore
from tests.helpers.config import TEST_REDIS_URL, write_config
from tests.helpers.docker import get_text
from tests.helpers.payloads import commit_sha, github_push, github_request, payload_text
from tests.helpers.redis_server import free_port
from tests.helpers.serve import serve_process

SECRET = "shop-webhook-secret"
TOKEN = "serve-test-token"
#: Short, so the test sees stalled connections closed; `serve --read-timeout` sets it (default 10 s).
READ_TIMEOUT_SECONDS = 4.0
#: The server sweeps for expired connections once a second, and its event loop wakes once a second.
CLOSE_SLACK_SECONDS = 4.0
MAX_BODY_BYTES = 64 * 1024
#: Stalled clients of each kind; together they are 200, more than the 2 × 8 application threads many times over.
PARTIAL_HEADERS, PARTIAL_BODY, IDLE = 67, 67, 66
TRICKLING = 4
PUSH_ANSWER_SECONDS = 1.0


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A `hooksvc serve` process, started as the README starts it, with a short read timeout."""
    tmp_path = tmp_path_factory.mktemp("serve")
    port = free_port()
    config = write_config(tmp_path, TEST_REDIS_URL, port=port, server=f"max_body_bytes = {MAX_BODY_BYTES}")
    with serve_process(config, port, {"SHOP_SECRET": SECRET, "HOOKSVC_API_TOKENS": TOKEN},
                       "--read-timeout", str(READ_TIMEOUT_SECONDS)):
        yield port


def stalled_clients(port: int) -> list[socket.socket]:
    """Open every kind of stalled client: partial headers, headers and part of the body, nothing at all."""
    partial_head = b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Eve"
    partial_body = (b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{")
    sockets: list[socket.socket] = []
    try:
        for data, count in ((partial_head, PARTIAL_HEADERS), (partial_body, PARTIAL_BODY), (b"", IDLE)):
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                if data:
                    sock.sendall(data)
                sockets.append(sock)
    except BaseException:
        close_all(sockets)
        raise
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, float]:
    """One request on a fresh connection: status, body, and seconds until the whole answer was in."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, data, time.monotonic() - started
    finally:
        conn.close()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (it is readable: end of stream or a reset)."""
    try:
        sock.setblocking(False)
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.setblocking(True)


class TestStalledClients:
    def test_pushes_are_answered_while_200_clients_stall_and_stalled_ones_are_closed(
        self, port: int, redis: redis_lib.Redis,
    ) -> None:
        """With 200 stalled connections open, signed pushes get 202 within 1 s; the stalled ones are then closed."""
        stalled = stalled_clients(port)
        trickling: list[socket.socket] = []
        try:
            opened = time.monotonic()
            for _ in range(TRICKLING):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"P")
                trickling.append(sock)
            time.sleep(0.3)  # let the server accept them all: they now hold whatever a client can hold
            for n in range(3):
                hook = github_request(github_push(after=commit_sha(100 + n)), SECRET)
                status, body, seconds = post(port, "/hooks/github", hook.body, hook.headers)
                assert status == 202, body
                assert seconds < PUSH_ANSWER_SECONDS, f"push {n} took {seconds:.2f} s"
            started = time.monotonic()
            assert get_text(f"http://127.0.0.1:{port}/healthz")[0] == 200
            assert time.monotonic() - started < PUSH_ANSWER_SECONDS
            assert time.monotonic() - opened < READ_TIMEOUT_SECONDS, "too slow to test before the read timeout"
            assert not any(closed_by_server(s) for s in stalled), "stalled clients closed before the read timeout"

            # Every stalled connection is closed after the read timeout, also one that keeps sending a byte
            # every half second: the timeout bounds the whole request, not the pause between its bytes.
            open_ = {s.fileno(): s for s in stalled + trickling}
            with selectors.DefaultSelector() as selector:
                for sock in open_.values():
                    selector.register(sock, selectors.EVENT_READ)
                deadline = opened + READ_TIMEOUT_SECONDS + CLOSE_SLACK_SECONDS
                while open_ and time.monotonic() < deadline:
                    for sock in trickling:
                        if sock.fileno() in open_:
                            with suppress(ConnectionError):  # closed: the select below sees it
                                sock.sendall(b"O")
                    for key, _ in selector.select(timeout=0.5):
                        sock = open_[key.fd]
                        if closed_by_server(sock):
                            selector.unregister(sock)
                            del open_[key.fd]
            assert not open_, f"{len(open_)} stalled connection(s) still open {time.monotonic() - opened:.1f} s on"
        finally:
            close_all(stalled + trickling)


class TestBodyLimit:
    def test_declared_oversize_body_is_a_json_413_before_the_body_is_sent(
        self, port: int, redis: redis_lib.Redis,
    ) -> None:
        """A Content-Length over max_body_bytes gets the application's JSON 413 without a body byte sent."""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % (50 * MAX_BODY_BYTES))
            answer = read_until_closed(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 ")
        assert b"over the limit" in json.loads(body)["error"].encode()

    def test_chunked_oversize_body_is_a_413(self, port: int, redis: redis_lib.Redis) -> None:
        """A chunked body is refused with a 413 as soon as it passes max_body_bytes."""
        chunk = b"2000\r\n" + b"x" * 0x2000 + b"\r\n"
        body = chunk * (MAX_BODY_BYTES // len(chunk) + 1)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            # Exactly one byte past the limit, then nothing: no unread bytes make the close a reset.
            sock.sendall(body[:MAX_BODY_BYTES + 1])
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]

    def test_body_within_the_limit_is_served(self, port: int, redis: redis_lib.Redis) -> None:
        """A signed push of exactly max_body_bytes is read whole and accepted."""
        payload = github_push(after=commit_sha(7))
        payload["padding"] = ""
        payload["padding"] = " " * (MAX_BODY_BYTES - len(payload_text(payload)))
        hook = github_request(payload, SECRET)
        assert len(hook.body) == MAX_BODY_BYTES
        status, body, _ = post(port, "/hooks/github", hook.body, hook.headers)
        assert status == 202, body


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class TestStreaming:
    def test_followed_log_streams_lines_as_they_are_written(self, port: int, store: DeploymentStore) -> None:
        """GET /api/deployments/<id>/log?follow=1 delivers each line while the deployment goes on, then ends."""
        dep = store.intake.submit([NewDeployment("shop", "a" * 40, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        store.logs.append(dep.id, "first line")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", f"/api/deployments/{dep.id}/log?follow=1", headers={"Authorization": f"Bearer {TOKEN}"})
            response = conn.getresponse()
            assert response.status == 200
            assert response.readline().startswith(b"queued push of ")
            assert response.readline() == b"first line\n"
            store.logs.append(dep.id, "second line")
            assert response.readline() == b"second line\n"
            store.start(dep.id, "")
            store.finish(dep.id, DeploymentState.SUCCEEDED, live_sha="a" * 40)
            assert b"finished: succeeded" in response.read()
        finally:
            conn.close()

    def test_log_long_poll_waits_for_the_next_line(self, port: int, store: DeploymentStore) -> None:
        """The page's /deployments/<id>/log.json?wait=1 holds the request until a line arrives."""
        dep = store.intake.submit([NewDeployment("shop", "b" * 40, "refs/heads/main", Trigger.PUSH)]).deployments[0]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", f"/deployments/{dep.id}/log.json", headers=auth)
            cursor = json.loads(conn.getresponse().read())["cursor"]
            timer = threading.Timer(0.5, store.logs.append, (dep.id, "late line"))
            timer.start()
            started = time.monotonic()
            conn.request("GET", f"/deployments/{dep.id}/log.json?wait=1&after={cursor}", headers=auth)
            answer = json.loads(conn.getresponse().read())
            waited = time.monotonic() - started
            timer.join()
        finally:
            conn.close()
        assert answer["lines"] == ["late line"]
        assert 0.4 < waited < 3
