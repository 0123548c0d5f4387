"""``rlm db migrate`` and ``rlm db status``: the PostgreSQL state database's schema.

Both read ``RLM_DATABASE_URL``; without it there is nothing to migrate (SQLite state files
create their tables themselves) and the commands say so (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from rlm.config import get_settings
from rlm.db.connect import connect
from rlm.db.migrations import migrate, status
from rlm.db.url import redact
from rlm.errors import InvalidInput

__all__ = ["add_db_commands"]


def _url() -> str:
    dsn = get_settings().database_dsn
    if dsn is None:
        raise InvalidInput(
            "RLM_DATABASE_URL is not set: state is SQLite under RLM_STATE_DIR, which needs no "
            "migration",
            field="database_url",
        )
    return dsn


def _cmd_migrate(args: argparse.Namespace) -> int:
    url = _url()
    with connect(url) as conn:
        applied = migrate(conn)
        found = status(conn)
    out = {
        "database": redact(url),
        "applied": [f"{m.version:04d}_{m.name}" for m in applied],
        "schemaVersion": found.current,
    }
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    url = _url()
    with connect(url) as conn:
        found = status(conn)
    out = {
        "database": redact(url),
        "schemaVersion": found.current,
        "knownVersion": found.latest,
        "applied": [
            {"version": v, "name": n, "appliedAt": at.isoformat()} for v, n, at in found.applied
        ],
        "pending": [f"{m.version:04d}_{m.name}" for m in found.pending],
        "newerThanCode": found.newer_than_code,
    }
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    # A database this release cannot run on is an error for a script checking it.
    return 2 if found.newer_than_code else 0


def add_db_commands(sub: Any) -> None:
    """Add ``db migrate`` and ``db status`` to the ``rlm`` subcommands ``sub``."""
    db = sub.add_parser("db", help="the PostgreSQL state database (RLM_DATABASE_URL)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    mig = db_sub.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    mig.set_defaults(func=_cmd_migrate)
    stat = db_sub.add_parser("status", help="the schema version and pending migrations")
    stat.set_defaults(func=_cmd_status)
