"""The LM memo cache: identical temperature-0 calls answered once, from the state store.

A call is memoisable when its temperature is 0 and its request allows it (``memo``, on by
default; ``options.memo: false`` opts a task out). The key is a digest of the provider, model,
messages and ``max_tokens`` (:func:`rlm.lm.calls.memo_key`); the value is the reply text and
the usage it cost when it was first answered. A cached answer costs nothing and is counted as
cached.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rlm.lm.calls import LMReply
from rlm.tasks.store import open_sqlite

__all__ = ["MemoStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lm_memo (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
"""


class MemoStore:
    """Memoised LM replies in SQLite (the state file, WAL).

    Args:
        path: The SQLite file (shared with the task table).
        max_text_bytes: Replies larger than this are not memoised.
        database_url: Keep the cache in this PostgreSQL database instead (shared).
    """

    def __init__(
        self, path: Path, *, max_text_bytes: int = 1 << 20, database_url: str | None = None
    ) -> None:
        self._conn = open_sqlite(path, database_url)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._max_text_bytes = max_text_bytes

    def get(self, key: str) -> LMReply | None:
        """The memoised reply for ``key``, marked cached (no tokens, no cost), or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT provider, model, text, finish_reason FROM lm_memo WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            self._conn.execute("UPDATE lm_memo SET hits = hits + 1 WHERE key = ?", (key,))
        provider, model, text, finish_reason = row
        return LMReply(
            text=text, provider=provider, model=model, cached=True, finish_reason=finish_reason
        )

    def put(self, key: str, reply: LMReply) -> None:
        """Memoise an answered call (the first answer for a key stays)."""
        if reply.cached or len(reply.text.encode("utf-8")) > self._max_text_bytes:
            return
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO lm_memo (key, provider, model, text, finish_reason, "
                "input_tokens, output_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    reply.provider,
                    reply.model,
                    reply.text,
                    reply.finish_reason,
                    reply.input_tokens,
                    reply.output_tokens,
                    time.time(),
                ),
            )

    def count(self) -> int:
        """How many replies are memoised."""
        with self._lock:
            (n,) = self._conn.execute("SELECT COUNT(*) FROM lm_memo").fetchone()
        return int(n)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
