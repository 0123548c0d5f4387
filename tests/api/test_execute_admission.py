"""``POST /execute`` admits first: an unauthenticated or rate-limited caller never reaches
preparation (parsing, planning, ray.put, storage reads), and preparation runs off the
replica's event loop."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api
from tests.support import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL."""
    return api_on_each_store


def _probe(marker: Path, release: Path | None = None, n: int = 100_000) -> dict[str, object]:
    params: dict[str, object] = {"marker": str(marker)}
    if release is not None:
        params["release"] = str(release)
    # A large input: prepared, it would be put into the object store (> 32 KiB inline).
    return {
        "type": "parallel",
        "description": "probe",
        "input": {"items": list(range(n)), "operation": "prepare_probe", "params": params},
    }


def _preparations(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_refused_callers_never_reach_preparation(api: Api, tmp_path: Path) -> None:
    marker = tmp_path / "prepared"
    body = _probe(marker)
    # No token, a forged token, a token without the scope: refused, nothing prepared.
    anonymous = httpx.post(f"{api.base_url}/execute", json=body, timeout=60)
    assert anonymous.status_code == 401
    forged = httpx.post(
        f"{api.base_url}/execute",
        json=body,
        headers={"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"},
        timeout=60,
    )
    assert forged.status_code == 401
    with api.client(api.token(scopes="rlm:read")) as reader:
        assert reader.post("/execute", json=body).status_code == 403
    # Rate-limited: an anonymous-tier token may send 10 requests a minute.
    with api.client(api.token(scopes="rlm:execute rlm:read", tier="anonymous")) as slow:
        for _ in range(10):
            assert slow.get("/tasks").status_code == 200
        limited = slow.post("/execute", json=body)
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
    # Malformed JSON from an unauthenticated caller is not even parsed: 401, not 400.
    garbage = httpx.post(f"{api.base_url}/execute", content=b"{not json", timeout=60)
    assert garbage.status_code == 401
    assert _preparations(marker) == 0
    # The probe does count preparations: an admitted caller's task is prepared once.
    with api.client(api.token(scopes="rlm:execute rlm:read", tier="enterprise")) as ok:
        ran = ok.post("/execute", json=body)
        assert ran.status_code == 200, ran.text
        assert ran.json()["output"] == sum(range(100_000))
    assert _preparations(marker) == 1


def test_preparation_runs_off_the_event_loop(api: Api, tmp_path: Path) -> None:
    marker, release = tmp_path / "prepared", tmp_path / f"release-{uuid.uuid4().hex}"
    token = api.token(scopes="rlm:execute rlm:read", tier="enterprise")
    answers: list[httpx.Response] = []

    def run() -> None:
        with api.client(token) as client:
            answers.append(client.post("/execute", json=_probe(marker, release, n=10)))

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_until(lambda: _preparations(marker) == 1, 60, "the task is being prepared")
        # The preparation is held; the replica's event loop still answers everyone else.
        with api.client(api.token()) as other:
            assert other.get("/health", timeout=20).status_code == 200
            assert other.get("/tasks", timeout=20).status_code == 200
    finally:
        release.touch()
        worker.join(timeout=120)
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["output"] == sum(range(10))


def test_bodies_are_still_validated_in_the_envelope(api: Api) -> None:
    with api.client(api.token()) as client:
        bad = client.post("/execute", json={"type": "recursive"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "INVALID_INPUT"
        assert bad.json()["error"]["details"]["field"] in ("description", "input")
        broken = client.post(
            "/execute", content=b'{"type": ', headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 400
        assert broken.json()["error"]["message"].startswith("body: not valid JSON")
        text = client.post("/execute", content=b"hello", headers={"Content-Type": "text/plain"})
        assert text.status_code == 400


def test_the_one_call_path_counts_every_request_exactly_once(api: Api, tmp_path: Path) -> None:
    # A user-tier token may send 60 requests a minute. The first execute is counted first
    # (the replica knows nothing of the caller); later ones, while the engine's last answer
    # left room, are counted by the call that runs them, and a bad body on that path is
    # counted when it is refused.
    marker = tmp_path / "prepared"
    small = {
        "type": "recursive",
        "description": "sum",
        "input": {"items": [1, 2, 3], "operation": "sum"},
    }
    with api.client(api.token(scopes="rlm:execute rlm:read", tier="user")) as caller:
        left = []
        for _ in range(40):
            ok = caller.post("/execute", json=small)
            assert ok.status_code == 200, ok.text
            assert ok.json()["output"] == 6
            left.append(int(ok.headers["RateLimit"].split("remaining=")[1].split(",")[0]))
        assert left == list(range(59, 19, -1))
        for _ in range(20):
            bad = caller.post("/execute", json={"type": "recursive", "description": "no input"})
            assert bad.status_code == 400, bad.text
        # Sixty counted: the next is refused, and is not prepared.
        limited = caller.post("/execute", json=_probe(marker, n=10))
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
        assert _preparations(marker) == 0
        assert caller.post("/execute", json=small).status_code == 429
