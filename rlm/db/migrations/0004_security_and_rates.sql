-- The security audit log and policies (security.db in SQLite), and the shared rate-limit
-- windows, on PostgreSQL. The audit tables keep SQLite's names and column order: the same
-- code (rlm/security/audit.py, rlm/security/store.py) reads them by position.

-- rlm/security/audit.py: one hash chain for every instance. Appends are serialised by the
-- transaction-scoped advisory lock the compat layer takes for "security.db" on BEGIN, and
-- each append re-reads the newest record under it, so two instances never fork the chain.
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    org_id TEXT,
    user_id TEXT,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    prev TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX events_org ON events (org_id, seq);
CREATE TABLE head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    digest TEXT NOT NULL,
    mac TEXT NOT NULL
);
-- Append-only for a careless program (someone with the database's owner role can drop the
-- trigger; the chain is what detects that).
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
-- Which key the chain is MAC'd with: an HMAC of a fixed label under the key (never the key:
-- it stays in each instance's state directory). An instance with another key is refused at
-- start instead of appending records no other instance can verify.
CREATE TABLE audit_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL
);

-- rlm/security/store.py: each org's changed policies. Read through on every lookup (no
-- cache in the security actor), so a change made on one instance is what the others read.
CREATE TABLE policies (
    org_id TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (org_id, policy_id)
);

-- rlm/ratelimit/shared.py: the request-rate windows of every key, shared by the instances.
-- The minute window is an exact log (one row per admission time, at most the minute limit
-- rows per key); the hour window counts in one-minute buckets (at most 61 rows per key), as
-- the in-memory windows of rlm/ratelimit/window.py do.
CREATE TABLE rate_log (
    key TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (key, at)
);
CREATE TABLE rate_buckets (
    key TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (key, bucket)
);
CREATE INDEX rate_buckets_bucket ON rate_buckets (bucket);
CREATE INDEX rate_log_at ON rate_log (at);

-- One request's check, and its count when it fits, in one statement (one round trip, one
-- transaction): a transaction-scoped advisory lock per key serialises the instances' checks
-- of one key, so two of them never both admit the last unit. p_now NULL reads the server's
-- clock, the one clock every instance shares; time never goes back for a key (a clock
-- stepped back cannot reopen its window). Returns the time used and the key's window rows
-- as they were before this request, from which the caller computes the figures it reports.
CREATE FUNCTION rlm_rate_take(
    p_key TEXT,
    p_cost BIGINT,
    p_minute_limit BIGINT,
    p_hour_limit BIGINT,
    p_consume BOOLEAN,
    p_now DOUBLE PRECISION
) RETURNS TABLE (
    now_s DOUBLE PRECISION,
    allowed BOOLEAN,
    log_at DOUBLE PRECISION[],
    log_n BIGINT[],
    bucket_ids BIGINT[],
    bucket_n BIGINT[]
) LANGUAGE plpgsql AS $$
DECLARE
    t DOUBLE PRECISION := COALESCE(p_now, extract(epoch FROM clock_timestamp()));
    minute_used BIGINT;
    hour_used BIGINT;
BEGIN
    IF p_consume THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('rlm-rate:' || p_key, 0));
    END IF;
    SELECT GREATEST(t, COALESCE(MAX(l.at), t)) INTO t FROM rate_log l WHERE l.key = p_key;
    SELECT COALESCE(array_agg(l.at ORDER BY l.at), '{}'),
           COALESCE(array_agg(l.n ORDER BY l.at), '{}'),
           COALESCE(SUM(l.n), 0)
      INTO log_at, log_n, minute_used
      -- The first bound lets the primary key's index find the window (rows a purge has not
      -- yet deleted are never read); the second is the window's, as rlm/ratelimit/window.py
      -- computes it, so both sides count the same rows.
      FROM rate_log l WHERE l.key = p_key AND l.at > t - 61 AND l.at + 60 > t;
    SELECT COALESCE(array_agg(b.bucket ORDER BY b.bucket), '{}'),
           COALESCE(array_agg(b.n ORDER BY b.bucket), '{}'),
           COALESCE(SUM(b.n), 0)
      INTO bucket_ids, bucket_n, hour_used
      FROM rate_buckets b
     WHERE b.key = p_key AND b.bucket >= floor((t - 3660) / 60)::BIGINT
       AND (b.bucket + 1) * 60 + 3600 > t;
    allowed := minute_used + p_cost <= p_minute_limit AND hour_used + p_cost <= p_hour_limit;
    IF allowed AND p_consume THEN
        INSERT INTO rate_log AS r VALUES (p_key, t, p_cost)
            ON CONFLICT (key, at) DO UPDATE SET n = r.n + excluded.n;
        INSERT INTO rate_buckets AS r VALUES (p_key, floor(t / 60)::BIGINT, p_cost)
            ON CONFLICT (key, bucket) DO UPDATE SET n = r.n + excluded.n;
    END IF;
    now_s := t;
    RETURN NEXT;
END
$$;

-- rlm/ratelimit/shared_leases.py: concurrent-agent leases, shared by the instances (a lease's
-- id is its task's; a dead instance's leases are released with its tasks' quota holds).
CREATE TABLE rate_leases (
    lease_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    agents BIGINT NOT NULL,
    expires_at DOUBLE PRECISION
);
CREATE INDEX rate_leases_key ON rate_leases (key);

-- Take p_n agents for p_key within p_limit, in one statement under the key's advisory lock:
-- expired leases of the key are dropped first; a lease id already taken is answered with the
-- lease it names (idempotent; the caller checks its key and size), nothing taken again.
CREATE FUNCTION rlm_lease_take(
    p_key TEXT,
    p_n BIGINT,
    p_limit BIGINT,
    p_lease_id TEXT,
    p_ttl DOUBLE PRECISION,
    p_now DOUBLE PRECISION
) RETURNS TABLE (
    allowed BOOLEAN,
    in_use BIGINT,
    lease_key TEXT,
    lease_agents BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    t DOUBLE PRECISION := COALESCE(p_now, extract(epoch FROM clock_timestamp()));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('rlm-lease:' || p_key, 0));
    DELETE FROM rate_leases l WHERE l.key = p_key AND l.expires_at <= t;
    SELECT l.key, l.agents INTO lease_key, lease_agents
      FROM rate_leases l WHERE l.lease_id = p_lease_id;
    SELECT COALESCE(SUM(l.agents), 0) INTO in_use FROM rate_leases l WHERE l.key = p_key;
    IF lease_key IS NOT NULL THEN
        allowed := TRUE;
    ELSE
        allowed := in_use + p_n <= p_limit;
        IF allowed THEN
            INSERT INTO rate_leases VALUES (
                p_lease_id, p_key, p_n, CASE WHEN p_ttl IS NULL THEN NULL ELSE t + p_ttl END
            );
            in_use := in_use + p_n;
        END IF;
    END IF;
    RETURN NEXT;
END
$$;
