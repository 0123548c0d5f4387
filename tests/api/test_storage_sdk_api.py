"""Storage reads and the Python SDK against the real server."""

from __future__ import annotations

import base64
import contextlib
import io
import os

import httpx
import pytest

from rlm.errors import Forbidden, InvalidInput, TaskNotFound
from rlm_hypervisor import AsyncRLMClient, RLMClient
from tests.api.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def blob(api: Api) -> bytes:
    data = os.urandom(300_000)
    public = api.settings.state_dir / "data" / "public"  # every reader's, on the default policy
    public.mkdir(parents=True, exist_ok=True)
    (public / "blob.bin").write_bytes(data)
    return data


def test_read_a_range_as_json_and_as_bytes(api: Api, blob: bytes) -> None:
    with api.client(api.token(scopes="rlm:read")) as client:
        body = {"connector": "local", "key": "public/blob.bin", "start": 1000, "end": 5000}
        response = client.post("/storage/read", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert base64.b64decode(answer["data"]) == blob[1000:5000]
        assert answer["method"] in {"mmap", "direct"}
        assert answer["latencyMs"] >= 0
        raw = client.post(
            "/storage/read", json=body, headers={"Accept": "application/octet-stream"}
        )
        assert raw.content == blob[1000:5000]
        clamped = client.post("/storage/read", json={**body, "end": 10**6}).json()
        assert base64.b64decode(clamped["data"]) == blob[1000:]
        for method in ("mmap", "direct", "standard", "async"):
            got = client.post("/storage/read", json={**body, "method": method}).json()
            assert base64.b64decode(got["data"]) == blob[1000:5000], method


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"connector": "local", "key": "../state.db", "start": 0, "end": 10}, 403),
        ({"connector": "local", "key": "/etc/passwd", "start": 0, "end": 10}, 403),
        ({"connector": "local", "key": "public/missing.bin", "start": 0, "end": 10}, 400),
        ({"connector": "local", "key": "missing.bin", "start": 0, "end": 10}, 403),
        ({"connector": "nope", "key": "public/blob.bin", "start": 0, "end": 10}, 400),
        ({"connector": "local", "key": "public/blob.bin", "start": 10, "end": 10}, 400),
        ({"connector": "local", "key": "public/blob.bin", "start": 10**7, "end": 10**7 + 5}, 400),
    ],
)
def test_bad_reads_are_refused(api: Api, blob: bytes, body: dict[str, object], status: int) -> None:
    del blob
    with api.client(api.token(scopes="rlm:read")) as client:
        response = client.post("/storage/read", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "requestId"}


def test_storage_needs_the_read_scope(api: Api) -> None:
    with api.client(api.token(scopes="rlm:execute")) as client:
        body = {"connector": "local", "key": "public/blob.bin", "start": 0, "end": 10}
        assert client.post("/storage/read", json=body).status_code == 403
    assert httpx.post(f"{api.base_url}/storage/read", json=body).status_code == 401


def test_the_documents_python_snippet(api: Api) -> None:
    client = RLMClient(api_key=api.token(), base_url=api.base_url)
    result = client.execute(
        {
            "type": "recursive",
            "description": "Process items",
            "input": {"items": [1, 2, 3, 4, 5], "operation": "sum"},
        }
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print(f"Result: {result.output}")
    assert out.getvalue() == "Result: 15\n"
    assert client.tasks.get(result.task_id).status == "completed"
    task_id = client.submit(
        {
            "type": "parallel",
            "description": "slow",
            "input": {"items": [1, 2], "operation": "slow_sum", "params": {"seconds": 0.2}},
        }
    )
    assert client.tasks.wait(task_id, timeout=60).output == 3
    with pytest.raises(TaskNotFound):
        client.tasks.get("task-nope")
    with pytest.raises(InvalidInput):
        client.execute(
            {"type": "recursive", "description": "x", "input": {"items": ["a"], "operation": "sum"}}
        )
    client.close()


def test_sdk_storage_and_async_client(api: Api, blob: bytes) -> None:
    import asyncio

    token = api.token(scopes="rlm:read rlm:execute")
    with RLMClient(api_key=token, base_url=api.base_url) as client:
        assert client.storage.read("local", "public/blob.bin", 0, 100) == blob[:100]
        with pytest.raises(Forbidden):
            client.storage.read("local", "../state.db", 0, 100)

    async def go() -> object:
        async with AsyncRLMClient(api_key=token, base_url=api.base_url) as aclient:
            result = await aclient.execute(
                {
                    "type": "sequential",
                    "description": "s",
                    "input": {"items": [1, 2, 3], "operation": "sum"},
                }
            )
            return result.output

    assert asyncio.run(go()) == 6


def test_storage_backed_task_over_http_needs_read_scope(api: Api) -> None:
    import numpy as np

    mine = api.settings.state_dir / "data" / "users" / "range-owner"
    mine.mkdir(parents=True, exist_ok=True)
    values = np.arange(200_000, dtype=np.int64)
    values.tofile(mine / "range.i64")
    body = {
        "type": "recursive",
        "description": "sum a file",
        "input": {
            "source": {
                "connector": "local",
                "key": "users/range-owner/range.i64",
                "format": "int64",
            },
            "operation": "sum",
        },
        "options": {"leafSize": 50_000},
    }
    with api.client(api.token(sub="range-owner", scopes="rlm:execute")) as client:
        refused = client.post("/execute", json=body)
        assert refused.status_code == 403
        assert refused.json()["error"]["details"]["requiredScope"] == "rlm:read"
    with api.client(api.token(sub="range-owner", scopes="rlm:execute rlm:read")) as client:
        response = client.post("/execute", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["output"] == int(values.sum())
        escape = {
            **body,
            "input": {
                **body["input"],
                "source": {"connector": "local", "key": "../state.db", "format": "int64"},
            },
        }
        assert client.post("/execute", json=escape).status_code == 403


def _write(api: Api, key: str, data: bytes) -> None:
    path = api.settings.state_dir / "data" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_cross_tenant_reads_are_refused_on_both_paths(api: Api) -> None:
    import numpy as np

    numbers = np.arange(1000, dtype=np.int64).tobytes()
    _write(api, "users/ada-x/own.i64", numbers)
    _write(api, "users/bea-x/secret.i64", numbers)
    _write(api, "orgs/acme-x/shared.i64", numbers)
    _write(api, "orgs/globex-x/plans.i64", numbers)
    _write(api, "state-copy.db", b"operator's own file at the root")

    def read(client: httpx.Client, key: str) -> httpx.Response:
        body = {"connector": "local", "key": key, "start": 0, "end": 16}
        return client.post("/storage/read", json=body)

    def task(client: httpx.Client, key: str) -> httpx.Response:
        source = {"connector": "local", "key": key, "format": "int64"}
        body = {
            "type": "parallel",
            "description": "sum",
            "input": {"source": source, "operation": "sum"},
        }
        return client.post("/execute", json=body)

    token = api.token(sub="ada-x", scopes="rlm:read rlm:execute", org="acme-x")
    with api.client(token) as ada:
        for key in ("users/ada-x/own.i64", "orgs/acme-x/shared.i64"):
            assert read(ada, key).status_code == 200, key
            ran = task(ada, key)
            assert ran.status_code == 200 and ran.json()["output"] == sum(range(1000)), ran.text
        for key in (
            "users/bea-x/secret.i64",
            "users/bea-x/missing.i64",  # answers as an existing one: nothing revealed
            "orgs/globex-x/plans.i64",
            "state-copy.db",
            "users/ada-x/../bea-x/secret.i64",
        ):
            for answer in (read(ada, key), task(ada, key)):
                assert answer.status_code == 403, (key, answer.text)
                details = answer.json()["error"]["details"]
                assert details.get("reason") in ("not_permitted", "parent_segment"), details
    # The same keys, for their owners.
    with api.client(api.token(sub="bea-x", scopes="rlm:read rlm:execute")) as bea:
        assert read(bea, "users/bea-x/secret.i64").status_code == 200
        assert read(bea, "users/ada-x/own.i64").status_code == 403
        assert task(bea, "orgs/acme-x/shared.i64").status_code == 403  # bea is in no org
