"""Faults against a real ``rlm serve`` (two API replicas): slow clients, dead processes.

Each test starts from a server that answers; the faults are real: sockets that stall, a
replica process and the engine's core process killed with SIGKILL. The figures (how fast, how
long) are the benchmarks' business (``benchmarks/resilience.py``); these tests assert what
every client is answered.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.serve_process import Served, free_port, rlm_serve
from tests.support import ok_response, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALLED = 600
# Spread over addresses (each under the per-client cap of 64): none is refused at the door, so
# every one of them reaches the proxy and waits for its body there.
STALL_ADDRESSES = [f"127.0.3.{i}" for i in range(1, 11)]


def _slow(seconds: float, n: int = 1) -> dict[str, Any]:
    return {
        "type": "parallel",
        "description": "slow",
        "input": {"items": [1] * n, "operation": "slow_sum", "params": {"seconds": seconds}},
        "options": {"leafSize": 1},
    }


SUM = {
    "type": "recursive",
    "description": "sum",
    "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
}


def _descendants(root: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every process under ``root`` (Ray's workers included)."""
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        commands[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append((child, commands.get(child, "")))
            stack.append(child)
    return found


@dataclass
class Service:
    """A running ``rlm serve`` and the environment it was started with."""

    served: Served
    env: dict[str, str]

    @property
    def base(self) -> str:
        return self.served.base

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1].split("/")[0])

    def pids(self, title: str) -> list[int]:
        """The processes under ``rlm serve`` whose command line starts with ``title``."""
        return [p for p, cmd in _descendants(self.served.process.pid) if cmd.startswith(title)]

    def token(self, tier: str = "user") -> str:
        args = ["--sub", f"u-{time.monotonic_ns()}", "--tier", tier]
        args += ["--scopes", "rlm:execute rlm:read rlm:quota:read"]
        return subprocess.run(
            [sys.executable, "-m", "rlm", "token", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )

    def ready(self) -> None:
        """Both replicas and the engine answer (after an earlier test's fault)."""
        wait_until(
            lambda: ok_response(lambda: httpx.get(f"{self.base}/health", timeout=10)),
            120,
            "the service answers /health",
            interval=0.5,
        )
        wait_until(lambda: len(self.pids("ray::ServeReplica")) >= 2, 120, "two replicas run")


def _envelope(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error", "requestId"}, body
    assert body["requestId"] == response.headers["x-request-id"]
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    state = tmp_path_factory.mktemp("resilience")
    env = {
        **os.environ,
        "RLM_STATE_DIR": str(state),
        "RLM_ENGINE__AGENTS": "2",
        "RLM_OPERATIONS": json.dumps(["tests.integration.ops:OPERATIONS"]),
        "RLM_SERVER__HEADER_TIMEOUT_S": "5",
        # Long enough that the 64 kept-alive connections of the cap test all stay open.
        "RLM_SERVER__KEEP_ALIVE_TIMEOUT_S": "120",
    }
    env.pop("RAY_ADDRESS", None)
    with rlm_serve(env, free_port()) as served:
        yield Service(served, env)


def _stall(address: str, port: int, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(address, 0))
    sock.sendall(
        (
            "POST /v1/execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 1000000\r\n\r\n"
        ).encode()
    )
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_600_stalled_bodies_leave_health_and_executes_answering(service: Service) -> None:
    service.ready()
    token = service.token()
    stalled = [
        _stall(STALL_ADDRESSES[i % len(STALL_ADDRESSES)], service.port, token)
        for i in range(STALLED)
    ]
    try:
        with service.client(service.token()) as client:
            health = [client.get("/health") for _ in range(20)]
            executes = [client.post("/execute", json=SUM) for _ in range(4)]
        assert [r.status_code for r in health] == [200] * 20
        assert [r.status_code for r in executes] == [200] * 4, executes[0].text
        assert {r.json()["output"] for r in executes} == {55}
        # The stalls were in force all along: none of them has been answered yet.
        poll = select.poll()
        for sock in stalled:
            poll.register(sock, select.POLLIN)
        assert poll.poll(0) == [], "the probes outlasted the body timeout: the test proves nothing"
        # Each stalled body is answered 408 in the envelope and its connection closed.
        for sock in stalled:
            head, _, body = _read_all(sock).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), head
            assert json.loads(body)["error"]["code"] == "TIMEOUT"
    finally:
        for sock in stalled:
            sock.close()


def _connect(port: int, address: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(address, 0))


def _answer(sock: socket.socket, token: str, close: bool) -> bytes:
    """Send ``GET /v1/health`` (as a user: anonymous callers get 10 a minute); the answer's
    status line."""
    sock.sendall(
        (
            f"GET /v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        ).encode()
    )
    data = sock.recv(65536)
    return data.split(b"\r\n", 1)[0]


def test_one_client_address_is_capped_and_a_slow_head_is_cut(service: Service) -> None:
    service.ready()
    token = service.token(tier="enterprise")
    kept = [_connect(service.port, "127.0.4.1") for _ in range(64)]
    try:
        # 64 connections answered and kept open: the address's whole allowance.
        assert {_answer(sock, token, close=False) for sock in kept} == {b"HTTP/1.1 200 OK"}
        for _ in range(3):
            with _connect(service.port, "127.0.4.1") as extra:
                assert _answer(extra, token, close=True) == b"HTTP/1.1 429 Too Many Requests"
                _read_all(extra)  # and closed (a connection left open times the read out)
        # Another address is not affected.
        with _connect(service.port, "127.0.4.2") as other:
            assert _answer(other, token, close=True) == b"HTTP/1.1 200 OK"
    finally:
        for sock in kept:
            sock.close()
    with _connect(service.port, "127.0.4.3") as slow:
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        head, _, body = _read_all(slow).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert json.loads(body)["error"]["code"] == "TIMEOUT"


def test_a_killed_replica_leaves_every_answer_in_the_envelope(service: Service) -> None:
    service.ready()
    token = service.token(tier="power_user")
    answers: list[httpx.Response] = []

    def execute() -> None:
        with service.client(token) as client:
            answers.append(client.post("/execute", json=_slow(4.0)))

    threads = [threading.Thread(target=execute) for _ in range(8)]
    for thread in threads:
        thread.start()
    with service.client(token) as client:
        wait_until(
            lambda: len(client.get("/tasks").json()["tasks"]) == 8,
            60,
            "all 8 tasks exist",
            interval=0.5,
        )
        os.kill(service.pids("ray::ServeReplica")[0], signal.SIGKILL)
        for thread in threads:
            thread.join(120)
        assert len(answers) == 8
        lost = []
        for response in answers:
            if response.status_code == 200:
                assert response.json()["output"] == 1
                continue
            body = _envelope(response)
            assert response.status_code == 500 and body["error"]["code"] == "INTERNAL_ERROR"
            lost.append(body["error"]["details"]["taskId"])
        # Serve spreads the requests over both replicas: the killed one held some.
        assert lost, "the killed replica served none of the requests"
        for task_id in lost:  # each was created, and runs on in the engine to its end
            wait_until(
                lambda t=task_id: client.get(f"/tasks/{t}").json()["status"] == "completed",
                60,
                f"{task_id} completes",
                interval=0.5,
            )


def _remaining(response: httpx.Response) -> int:
    fields = dict(p.strip().split("=") for p in response.headers["RateLimit"].split(","))
    assert fields["limit"] == "60"
    return int(fields["remaining"])


def test_a_killed_core_answers_in_flight_executes_with_their_task_and_keeps_the_count(
    service: Service,
) -> None:
    service.ready()
    token = service.token(tier="user")  # 60 requests a minute
    sent: list[float] = []  # when each counted request was sent
    answers: list[httpx.Response] = []

    def execute(i: int) -> None:
        with service.client(token) as client:
            sent.append(time.monotonic())
            key = {"Idempotency-Key": f"in-flight-{i}"}
            answers.append(client.post("/execute", json=_slow(30.0), headers=key))

    with service.client(token) as client:
        for _ in range(10):
            sent.append(time.monotonic())
            assert client.get("/tasks").status_code == 200
        threads = [threading.Thread(target=execute, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()

        def running() -> bool:
            sent.append(time.monotonic())
            tasks = client.get("/tasks").json()["tasks"]
            return len(tasks) == 3 and all(t["status"] == "running" for t in tasks)

        wait_until(running, 60, "the three tasks run", interval=1.0)
        (core,) = service.pids("ray::HypervisorCore")
        os.kill(core, signal.SIGKILL)
        for thread in threads:
            thread.join(120)
        assert len(answers) == 3
        for response in answers:
            body = _envelope(response)
            assert response.status_code == 500, body
            details = body["error"]["details"]
            assert details["status"] == "failed", body  # interrupted with the engine
            sent.append(time.monotonic())
            status = client.get(f"/tasks/{details['taskId']}").json()
            assert status["status"] == "failed"
            assert "interrupted" in status["result"]["error"]["message"]
        # The keys survived the restart with their tasks: a repeat answers the interrupted
        # task, it does not run it again.
        sent.append(time.monotonic())
        again = client.post(
            "/execute", json=_slow(30.0), headers={"Idempotency-Key": "in-flight-0"}
        )
        assert again.status_code == 500 and again.headers["Idempotent-Replayed"] == "true"
        result = _envelope(again)["error"]["details"]["result"]
        assert result["status"] == "failed" and "interrupted" in result["error"]["message"]
        assert result["taskId"] in {_envelope(a)["error"]["details"]["taskId"] for a in answers}
        after = client.get("/tasks")
        now = time.monotonic()
        # Every request of the last minute still counts: the restarted engine did not start
        # the minute again from zero.
        counted = sum(1 for t in sent if now - t < 59.0)
        assert _remaining(after) <= 60 - counted - 1, (counted, after.headers["RateLimit"])
