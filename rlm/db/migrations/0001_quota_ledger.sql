-- The quota ledger's entities, shared by every instance on this database.
-- Each row is one entity of the ledger (rlm/quotas/changes.py KINDS) as JSON; a deleted entity
-- stays as a tombstone (data NULL) so that an instance catching up sees the delete.
-- rev is the ledger revision that last wrote the row: an instance that knows revision N reads
-- only the rows with rev > N.
CREATE TABLE quota_meta (
    id  SMALLINT PRIMARY KEY CHECK (id = 1),
    rev BIGINT NOT NULL
);
INSERT INTO quota_meta (id, rev) VALUES (1, 0);

CREATE TABLE quota_entities (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    data JSONB,
    rev  BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX quota_entities_rev ON quota_entities (rev);

-- One quota change in one round trip: if the caller's revision is the ledger's, write its rows
-- at the next revision (the revision row locked for the statement's transaction); otherwise
-- write nothing and return what the caller missed (rows with rev > expected; all of them when
-- the caller knows nothing, expected < 0), for it to catch up and apply its call again.
CREATE FUNCTION quota_commit(expected BIGINT, changes JSONB) RETURNS JSONB
LANGUAGE plpgsql AS $$
DECLARE
    current BIGINT;
    since BIGINT;
BEGIN
    SELECT rev INTO current FROM quota_meta WHERE id = 1 FOR UPDATE;
    IF current <> expected THEN
        since := CASE WHEN expected < 0 OR expected > current THEN -1 ELSE expected END;
        RETURN jsonb_build_object(
            'rev', current,
            'full', since < 0,
            'rows', COALESCE(
                (SELECT jsonb_agg(jsonb_build_array(kind, key, data))
                   FROM quota_entities WHERE rev > since),
                '[]'::jsonb));
    END IF;
    IF jsonb_array_length(changes) > 0 THEN
        current := current + 1;
        INSERT INTO quota_entities (kind, key, data, rev)
        SELECT r->>0, r->>1, NULLIF(r->2, 'null'::jsonb), current
          FROM jsonb_array_elements(changes) AS r
        ON CONFLICT (kind, key) DO UPDATE SET data = EXCLUDED.data, rev = EXCLUDED.rev;
        UPDATE quota_meta SET rev = current WHERE id = 1;
    END IF;
    RETURN jsonb_build_object('rev', current);
END
$$;
