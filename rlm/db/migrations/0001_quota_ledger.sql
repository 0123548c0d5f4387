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
