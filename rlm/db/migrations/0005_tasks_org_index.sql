-- An admin lists its org's tasks, newest first (GET /v1/tasks filtered by org): without this
-- index that read scanned every task of every org. SQLite's schema has the same index.
CREATE INDEX tasks_org ON tasks (org_id, created_at);
