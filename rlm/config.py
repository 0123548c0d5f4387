"""Settings, read once from the environment (``RLM_`` prefix, nested with ``__``).

Example:
    ``RLM_STATE_DIR=/var/lib/rlm RLM_ENGINE__AGENTS=8 rlm serve``

Settings are built by :func:`get_settings` (cached) on the driver and handed to actors as
plain objects; nothing is read at import time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rlm.auth.settings import AuthSettings
from rlm.lm.settings import LMSettings
from rlm.rlmmode.settings import RLMSettings
from rlm.sandbox.settings import SandboxSettings
from rlm.storage.settings import StorageSettings, with_local_default
from rlm.webhooks.settings import WebhookSettings

__all__ = ["EngineSettings", "ServerSettings", "Settings", "get_settings"]


class ServerSettings(BaseModel):
    """The HTTP API on Ray Serve.

    Attributes:
        host: The address ``rlm serve`` listens on.
        port: Its port.
        max_body_bytes: Larger request bodies are refused (413).
        request_timeout_s: Serve's proxy answers a request still running after this long
            with a timeout.
        max_ongoing_requests: Requests one API replica handles at once.
        min_replicas: API replicas kept running (two, so a replica that dies is not an
            outage).
        max_replicas: API replicas Serve may scale up to.
        target_ongoing_requests: Serve adds a replica when replicas average more requests
            in flight than this.
        header_timeout_s: A connection must send a whole request head within this long of
            opening (or of the first byte of its next request); else 408 and it is closed.
        body_timeout_s: A request body must arrive whole within this long of its head; else
            408 and the connection is closed. No replica is involved before it has.
        keep_alive_timeout_s: An idle connection between requests is closed after this long.
        keep_alive_max_requests: A connection is closed after this many requests (0: no cap).
        max_connections: Connections the proxy holds open at once, per node (0: no cap);
            more are answered 503 and closed.
        max_connections_per_client: Connections one client address may hold open at once
            (0: no cap); more are answered 429 and closed. Clients behind one NAT or load
            balancer share an address: raise it (or set 0) there.
        tls_cert: PEM certificate (chain) to serve HTTPS with (TLS 1.3 only; the port then
            refuses plain HTTP). Give ``tls_key`` too.
        tls_key: Its PEM private key.
        tls_key_password: The key's password, if it is encrypted.
        behind_tls_proxy: A proxy in front terminates TLS: production may then serve plain
            HTTP to it (production refuses plain HTTP otherwise).
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(default=600.0, gt=0)
    sse_heartbeat_s: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="An event stream sends a keep-alive comment after this long without events.",
    )
    max_ongoing_requests: int = Field(default=256, ge=1)
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    target_ongoing_requests: int = Field(default=64, ge=1)
    shutdown_poll_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description=(
            "A stopping API replica checks this often whether its requests in flight have"
            " finished (it waits for them, up to 20 s, and at least this long)."
        ),
    )
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    keep_alive_timeout_s: int = Field(default=15, ge=1)
    keep_alive_max_requests: int = Field(default=1000, ge=0)
    max_connections: int = Field(default=4096, ge=0)
    max_connections_per_client: int = Field(default=64, ge=0)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_key_password: SecretStr | None = None
    behind_tls_proxy: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give tls_cert and tls_key together")
        return self

    @property
    def scheme(self) -> str:
        """``https`` when the API serves TLS itself, else ``http``."""
        return "http" if self.tls_cert is None else "https"


class EngineSettings(BaseModel):
    """How the execution engine sizes its agent pool and plans trees.

    Attributes:
        default_max_depth: ``maxDepth`` of a plan when the request names none.
        default_fanout: ``fanout`` when the request names none.
    """

    agents: int | None = Field(
        default=None, ge=1, le=4096, description="Agent actors in the pool; default: cluster CPUs."
    )
    calls_per_agent: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Agent calls kept in flight per agent, so no agent idles between calls.",
    )
    max_batch: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Most ready calls of one task sent to an agent in one message.",
    )
    default_max_depth: int = Field(default=8, ge=0, le=32)
    default_fanout: int = Field(default=4, ge=2, le=1024)
    max_leaves: int = Field(
        default=4096, ge=1, le=1_000_000, description="Upper bound on leaves the planner makes."
    )
    leaf_cost: float = Field(
        default=65_536.0,
        gt=0,
        description="Target cost units per leaf (one unit ~ one item of linear work).",
    )
    vector_leaf_factor: float = Field(
        default=256.0,
        ge=1,
        description="Built-in numeric operations run vectorised (numpy): their leaves take "
        "this many times the items, so each still costs well above a call's overhead.",
    )
    cancel_grace_s: float = Field(
        default=10.0, gt=0, description="How long a cancel waits for in-flight calls to stop."
    )
    call_retries: int = Field(
        default=2,
        ge=0,
        le=16,
        description="Times an agent call lost with its worker (a dead process or node) is sent "
        "again to another agent before its task fails; calls of operations that call a "
        "language model are never sent twice.",
    )
    max_task_events: int = Field(
        default=10_000,
        ge=2,
        le=10_000_000,
        description="Events kept per task before its terminal one, progress events not "
        "counted; over it, a task.truncated marker is recorded and later events are dropped.",
    )
    max_task_progress_events: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Progress events (nodes.started, task.progress) kept per task, counted "
        "apart from its other events so progress never crowds out a long task's trajectory; "
        "over it, a progress.truncated marker is recorded and later progress is dropped.",
    )
    quota_hold_ttl_s: float = Field(
        default=900.0,
        gt=0,
        description="A quota hold no running task owns (one a caller of quota_batch reserved "
        "and never reconciled) is released after this many seconds.",
    )


class Settings(BaseSettings):
    """Every setting of RLM Hypervisor.

    Attributes:
        env: ``production`` refuses insecure defaults (a generated JWT secret; plain HTTP
            unless a proxy in front terminates TLS).
        state_dir: Where the SQLite state file and generated secrets live.
        database_url: A ``postgresql://user:password@host:5432/db`` URL: quotas, tasks and
            their events, idempotency keys, the LM memo, the rate-limit windows, the webhook
            outbox, and the security audit log and policies live in that PostgreSQL database
            (migrated at start-up), shared by several instances (each needs the same
            ``audit-key`` file in its ``state_dir``); unset, state is SQLite under
            ``state_dir``. Secret: never printed.
        ray_address: Join this Ray cluster instead of starting a local one.
        namespace: Ray namespace of the singleton actors.
        engine: Execution engine settings.
        server: HTTP API settings.
        auth: JWT verification and minting.
        storage: Named storage connectors (``local`` is always there).
        lm: Language-model providers (``RLM_LM__*``; see :mod:`rlm.lm.settings`).
        log_format: ``text`` for people, ``json`` (one object per line, with the request id on
            every line of a request) for log collectors.
        log_dir: Where the API replicas write their logs (default: Ray's session log
            directory, ``/tmp/ray/session_latest/logs/serve``).
        rlm: RLM mode's session hosts and request bounds (``RLM_RLM__*``).
        sandbox: RLM sessions' REPL sandbox (``RLM_SANDBOX__*``).
        webhooks: Webhook delivery (``RLM_WEBHOOKS__*``; see :mod:`rlm.webhooks.settings`).
    """

    model_config = SettingsConfigDict(
        env_prefix="RLM_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    env: Literal["development", "production"] = "development"
    state_dir: Path = Field(default_factory=lambda: Path.home() / ".rlm")
    database_url: SecretStr | None = None
    database_pool_size: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Connections each process keeps open to RLM_DATABASE_URL at most, per "
        "pool: the stores' shared pool, and in the engine core also the pool of its "
        "asynchronous hot path (the task records of executes). Raise it with many concurrent "
        "readers per process; the server's max_connections must cover every process's pools.",
    )
    ray_address: str | None = None
    namespace: str = "rlm"
    engine: EngineSettings = Field(default_factory=EngineSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    lm: LMSettings = Field(default_factory=LMSettings)
    log_format: Literal["text", "json"] = "text"
    log_dir: Path | None = None
    rlm: RLMSettings = Field(default_factory=RLMSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    operations: list[str] = Field(
        default_factory=list,
        description="Extra operations for requests to name: 'module:attribute' paths to an "
        "Operation or a list of them (HTTP callers can only name registered operations).",
    )

    @property
    def storage_settings(self) -> StorageSettings:
        """Storage settings with the embedded ``local`` connector at ``<state_dir>/data``."""
        return with_local_default(self.storage, self.state_dir)

    @model_validator(mode="after")
    def _postgresql_only(self) -> Settings:
        if self.database_url is not None:
            from rlm.db.url import validate_database_url

            validate_database_url(self.database_url.get_secret_value())
        return self

    @property
    def database_dsn(self) -> str | None:
        """The PostgreSQL URL in clear (for connecting only; never log it), or ``None``."""
        return None if self.database_url is None else self.database_url.get_secret_value()

    @property
    def database_path(self) -> Path:
        """The SQLite state file inside ``state_dir``."""
        return self.state_dir / "state.db"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
