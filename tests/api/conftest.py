"""A real Serve app over HTTP on loopback, and tokens signed with real keys."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import ray
from pydantic import SecretStr
from ray import serve

from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import EngineSettings, ServerSettings, Settings
from rlm.db.connect import ensure_schema
from rlm.lm.settings import LMSettings
from rlm.runtime.hypervisor import core_actor_name
from rlm.sandbox.settings import SandboxSettings
from rlm.testing import ChatRequest, FakeLMServer
from rlm.testing.postgres import ThrowawayPostgres
from serve_app.deployment import build_app
from tests import engines, rlm_script
from tests.api.served_oracle import OracleServe, oracle_serve
from tests.integration.conftest import TEST_WEBHOOKS
from tests.support import ok_response, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Api:
    """The running API: its base URL, settings, and a token minter."""

    base_url: str
    settings: Settings

    def token(
        self,
        sub: str | None = None,
        scopes: str = "rlm:execute rlm:read",
        tier: str = "user",
        **claims: object,
    ) -> str:
        key = load_signing_key(self.settings.auth, self.settings.state_dir, self.settings.env)
        return issue_token(
            sub or f"user-{uuid.uuid4().hex[:8]}",
            scopes.split(),
            tier,
            settings=self.settings.auth,
            key=key,
            **claims,  # type: ignore[arg-type]
        )

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


def _respond(request: ChatRequest) -> str:
    system = request.messages[0]["content"] if request.messages[0]["role"] == "system" else ""
    if "Recursive Language Model" in system:
        return rlm_script.responder(request)  # an RLM's turn: its test's script
    return "R:" + request.last_user_message[::-1]


@pytest.fixture(scope="package")
def lm_server() -> Iterator[FakeLMServer]:
    """The service's LM provider: an OpenAI-compatible server of ours on loopback, standing
    in for a paid API (this machine reaches none). Replies echo the prompt reversed; RLM
    turns answer from the scripts of ``tests/rlm_script.py``."""
    with FakeLMServer(responder=_respond) as server:
        yield server


def _settings(
    state: Path, port: int, lm_server: FakeLMServer, database_url: str | None = None
) -> Settings:
    return Settings(
        state_dir=state,
        database_url=None if database_url is None else SecretStr(database_url),
        engine=EngineSettings(agents=2, cancel_grace_s=5.0),
        # A stopping replica checks for requests in flight every 0.1 s, not 2 s: the session's
        # three apps are deleted at its end, each waiting one poll at least.
        server=ServerSettings(port=port, min_replicas=1, max_replicas=1, shutdown_poll_s=0.1),
        operations=["tests.integration.ops:OPERATIONS"],
        lm=LMSettings(
            base_url=lm_server.url,
            api_key="test-key",  # type: ignore[arg-type]
            model="fake-model",
            input_price_per_mtok=1.0,
            output_price_per_mtok=2.0,
        ),
        # RLM tasks' cells: a short CPU cap, so an endless loop ends within the test.
        sandbox=SandboxSettings(cell_cpu_s=2, cell_timeout_s=30, max_processes=16),
        webhooks=TEST_WEBHOOKS,
    )


def _run_app(settings: Settings, name: str, prefix: str) -> str:
    """Run the app as ``name`` at ``prefix`` on the session's Serve proxy; its base URL once
    it answers."""
    serve.run(build_app(settings), name=name, route_prefix=prefix, blocking=False)
    base = f"http://127.0.0.1:{settings.server.port}{prefix.rstrip('/')}/v1"
    wait_until(
        lambda: ok_response(lambda: httpx.get(f"{base}/health", timeout=5)),
        120,
        f"the API at {prefix} answers /health",
        interval=0.5,
    )
    return base


@pytest.fixture(scope="package")
def sqlite_api(
    ray_session: None, lm_server: FakeLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The API on the embedded SQLite state, at ``/``."""
    port = _free_port()
    settings = _settings(tmp_path_factory.mktemp("api-state"), port, lm_server)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield Api(_run_app(settings, "rlm-test", "/"), settings)
    serve.delete("rlm-test")
    # The API tests are done: Serve, the engine and its audit writer go (the tests after them
    # do not pay for their idle actors).
    serve.shutdown()
    engines.reap()


@pytest.fixture(scope="package")
def api(sqlite_api: Api) -> Api:
    """The session's API (SQLite); a module parametrised over both stores redefines it from
    :func:`api_on_each_store`."""
    return sqlite_api


@pytest.fixture(scope="package")
def pg_api(
    sqlite_api: Api,
    lm_server: FakeLMServer,
    postgres_server: ThrowawayPostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    """The same API on PostgreSQL (``RLM_DATABASE_URL``), at ``/pg`` beside the SQLite one:
    an engine of its own (its own state directory, so its own core, keys and agents)."""
    url = postgres_server.database_url("api_suites")
    ensure_schema(url)
    settings = _settings(
        tmp_path_factory.mktemp("api-pg-state"), sqlite_api.settings.server.port, lm_server, url
    )
    yield Api(_run_app(settings, "rlm-test-pg", "/pg"), settings)
    serve.delete("rlm-test-pg")
    # Its engine too (the SQLite one goes with the package's Serve): its connections close
    # before the session's PostgreSQL stops.
    ray.kill(ray.get_actor(core_actor_name(settings), namespace=settings.namespace))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api_on_each_store(request: pytest.FixtureRequest) -> Api:
    """The API on each state store in turn, for the suites parametrised over both: a module
    that defines ``api`` from it runs all its tests on SQLite, then all on PostgreSQL (one
    server per store, shared by every such module)."""
    name = "sqlite_api" if request.param == "sqlite" else "pg_api"
    chosen: Api = request.getfixturevalue(name)
    return chosen


@pytest.fixture(scope="package")
def fuzz_root(api: Api) -> Iterator[str]:
    """A second deployment beside the session's, at ``/fuzz``, for the fuzzers: the same engine
    and state directory, offering the built-in operations only (the test operations hold
    agents for seconds, fail on purpose or write files where their parameters say)."""
    settings = api.settings.model_copy(update={"operations": []})
    serve.run(build_app(settings), name="rlm-fuzz", route_prefix="/fuzz", blocking=False)
    root = api.base_url.removesuffix("/v1") + "/fuzz"
    wait_until(
        lambda: ok_response(lambda: httpx.get(f"{root}/v1/health", timeout=5)),
        120,
        "the fuzzed app answers /health",
        interval=0.5,
    )
    yield root
    serve.delete("rlm-fuzz")


@pytest.fixture
def user(api: Api) -> Callable[..., httpx.Client]:
    """A client factory for fresh users (each has its own rate-limit counters)."""

    def make(**kwargs: object) -> httpx.Client:
        return api.client(api.token(**kwargs))  # type: ignore[arg-type]

    return make


@pytest.fixture
def sqlite_user(sqlite_api: Api) -> Callable[..., httpx.Client]:
    """:func:`user` on the SQLite API whatever the module's ``api``: for the tests of a suite
    parametrised over both stores that check the HTTP layer only (auth, validation) and never
    reach the store, so run once."""

    def make(**kwargs: object) -> httpx.Client:
        return sqlite_api.client(sqlite_api.token(**kwargs))  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="package")
def oracle_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OracleServe]:
    """``rlm serve`` in a process of its own with the OOLONG oracle as its LM, shared by the
    tests that use the service from outside (bare SDK install, notebooks)."""
    with oracle_serve(tmp_path_factory.mktemp("oracle-serve")) as served:
        yield served
