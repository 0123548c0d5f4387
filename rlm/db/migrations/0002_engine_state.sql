-- The engine's state that SQLite keeps in state.db and webhooks.db, on PostgreSQL.
-- Same tables, same column order (the stores read rows by position), PostgreSQL types:
-- REAL epoch seconds -> DOUBLE PRECISION, INTEGER -> BIGINT, BLOB -> BYTEA.

-- rlm/tasks/store.py: task records and the instances running them (heartbeats).
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    type TEXT NOT NULL,
    description TEXT NOT NULL,
    priority TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    org_id TEXT,
    team_id TEXT,
    request_json TEXT NOT NULL,
    planned_calls BIGINT NOT NULL,
    completed_calls BIGINT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    result_json TEXT,
    instance_id TEXT NOT NULL,
    stored_bytes BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tasks_owner ON tasks (owner_id, created_at);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_team ON tasks (team_id);
CREATE TABLE instances (
    instance_id TEXT PRIMARY KEY,
    pid BIGINT NOT NULL,
    host TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    ray_address TEXT
);
-- A cancel asked of an instance by another (the running one polls for its tasks' requests).
CREATE TABLE task_cancels (
    task_id TEXT PRIMARY KEY,
    requested_at DOUBLE PRECISION NOT NULL
);

-- rlm/tasks/event_store.py
CREATE TABLE task_events (
    task_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    data_json TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);

-- rlm/tasks/idempotency.py
CREATE TABLE idempotency (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);

-- rlm/lm/memo.py
CREATE TABLE lm_memo (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    hits BIGINT NOT NULL DEFAULT 0
);

-- rlm/ratelimit/journal.py
CREATE TABLE rate_counts (
    key TEXT NOT NULL,
    second BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (key, second)
);
CREATE INDEX rate_counts_second ON rate_counts (second);

-- rlm/webhooks/store.py: registrations and the outbox (state.db in SQLite)...
CREATE TABLE webhooks (
    webhook_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    org_id TEXT,
    scope TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    secrets TEXT NOT NULL,
    status TEXT NOT NULL,
    disabled_reason TEXT,
    disabled_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX webhooks_owner ON webhooks (owner_id);
CREATE INDEX webhooks_org ON webhooks (org_id);
CREATE TABLE webhook_messages (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    owner_id TEXT,
    org_id TEXT,
    targets TEXT,
    body BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

-- ...and the delivery worker's tables (webhooks.db in SQLite).
CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    leased BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    next_attempt_at DOUBLE PRECISION,
    expires_at DOUBLE PRECISION NOT NULL,
    last_attempt_at DOUBLE PRECISION,
    last_status_code BIGINT,
    last_error TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at);
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    status_code BIGINT,
    latency_ms DOUBLE PRECISION NOT NULL,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE TABLE webhook_health (
    webhook_id TEXT PRIMARY KEY,
    consecutive_failures BIGINT NOT NULL,
    failing_since DOUBLE PRECISION
);
CREATE TABLE webhook_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
