-- rlm/eval/store.py: evaluation runs (rlm eval oolong reports) recorded through the API.
-- Same columns, same order as the SQLite table (the store reads rows by position).
CREATE TABLE evaluations (
    run_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    org_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    benchmark TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
CREATE INDEX evaluations_owner ON evaluations (owner_id, created_at);
CREATE INDEX evaluations_org ON evaluations (org_id, created_at);
