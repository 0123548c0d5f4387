"""The PostgreSQL state store's plumbing: the URL setting, connections and schema migrations.

State lives in SQLite files under ``RLM_STATE_DIR`` by default; ``RLM_DATABASE_URL`` names a
PostgreSQL database instead, which several service instances can share.
"""

from __future__ import annotations

from rlm.db.migrations import (
    Migration,
    SchemaStatus,
    check_schema,
    known_migrations,
    migrate,
    status,
)
from rlm.db.url import redact, validate_database_url

__all__ = [
    "Migration",
    "SchemaStatus",
    "check_schema",
    "known_migrations",
    "migrate",
    "redact",
    "status",
    "validate_database_url",
]
