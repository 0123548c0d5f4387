"""Recorded evaluation runs: ``evaluations.db`` in the state directory, or PostgreSQL.

A run is the report ``rlm eval oolong`` wrote, kept with who recorded it (its owner and the
owner's org) and when. A run is seen by its owner and by every member of the org it was
recorded in: evaluations are how a team compares its modes, so they are shared within the
tenant and never across tenants. An unknown id and another org's run answer the same
(:class:`~rlm.errors.EvaluationNotFound`), so ids cannot be probed.

One body of SQL serves both databases (:func:`rlm.tasks.store.open_sqlite` speaks it to
PostgreSQL through :mod:`rlm.db.compat`); the PostgreSQL table is migration 0003.

Example:
    >>> store = EvaluationStore(Path("/tmp/state/evaluations.db"))        # doctest: +SKIP
    >>> run = store.record(report, owner_id="ada", org_id="acme")          # doctest: +SKIP
    >>> store.get(Viewer("bob", "acme", False), run.run_id).modes.keys()   # doctest: +SKIP
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from rlm.admission import Viewer
from rlm.errors import Conflict, EvaluationNotFound, InvalidInput
from rlm.jsonable import dumps
from rlm.models.evaluations import EvaluationReport, EvaluationRun, EvaluationSummary

__all__ = ["EVALUATIONS_DB_FILENAME", "MAX_LIST", "EvaluationStore"]

#: The SQLite file in the state directory.
EVALUATIONS_DB_FILENAME: Final = "evaluations.db"
#: The most runs one list answers.
MAX_LIST: Final = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    run_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    org_id TEXT,
    created_at REAL NOT NULL,
    benchmark TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_owner ON evaluations (owner_id, created_at);
CREATE INDEX IF NOT EXISTS evaluations_org ON evaluations (org_id, created_at);
"""

_COLUMNS = "run_id, owner_id, org_id, created_at, benchmark, summary_json"


class EvaluationStore:
    """Evaluation runs in a SQLite file (WAL), or in PostgreSQL with ``database_url``.

    Args:
        path: The database file (created mode 0600 if missing).
        database_url: Keep the runs in this migrated PostgreSQL database instead.
        clock: Wall-clock seconds (injected for tests).
    """

    def __init__(
        self,
        path: Path,
        *,
        database_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from rlm.tasks.store import open_sqlite

        self._clock = clock
        self._lock = threading.Lock()
        self._conn = open_sqlite(path, database_url)
        # On PostgreSQL the DDL is skipped: the table is migration 0003's.
        self._conn.executescript(_SCHEMA)

    def record(
        self, report: EvaluationReport, *, owner_id: str, org_id: str | None
    ) -> EvaluationRun:
        """Store ``report`` as a new run of ``owner_id`` (in ``org_id``); returns the run.

        Raises:
            Conflict: A result names a mode the report's ``modes`` do not hold.
        """
        unknown = report.unknown_modes()
        if unknown:
            raise Conflict(
                f"results[{unknown[0]}].mode must be one of the report's modes",
                {"modes": sorted(report.modes), "results": unknown[:20]},
                field="results",
            )
        run = EvaluationRun(
            run_id=f"eval_{secrets.token_hex(12)}",
            owner_id=owner_id,
            org_id=org_id,
            created_at=datetime.fromtimestamp(self._clock(), UTC),
            benchmark=report.benchmark,
            config=report.config,
            modes=report.modes,
            windows=report.windows,
            questions=report.questions,
            results=report.results,
        )
        summary = _dumps({"config": run.config, "modes": _modes(run)})
        detail = _dumps(
            {"windows": run.windows, "questions": run.questions, "results": run.results}
        )
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO evaluations (run_id, owner_id, org_id, created_at, benchmark,"
                    " summary_json, detail_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        owner_id,
                        org_id,
                        run.created_at.timestamp(),
                        # A lone surrogate is valid JSON but not UTF-8: kept as its escape.
                        run.benchmark.encode("utf-8", "backslashreplace").decode(),
                        summary,
                        detail,
                    ),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return run

    def list(self, viewer: Viewer, limit: int = 50) -> list[EvaluationSummary]:
        """The runs ``viewer`` may see (its own, and its org's), newest first.

        Raises:
            InvalidInput: ``limit`` is not within 1..:data:`MAX_LIST`.
        """
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be within 1..{MAX_LIST}", field="limit")
        where, args = _visible(viewer)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM evaluations WHERE {where}"
                " ORDER BY created_at DESC, run_id LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_summary(row) for row in rows]

    def get(self, viewer: Viewer, run_id: str) -> EvaluationRun:
        """The whole run ``run_id``.

        Raises:
            EvaluationNotFound: No such run, or one ``viewer`` may not see.
        """
        where, args = _visible(viewer)
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS}, detail_json FROM evaluations WHERE run_id = ? AND ({where})",
                (run_id, *args),
            ).fetchone()
        if row is None:
            raise EvaluationNotFound(run_id)
        summary = _summary(row[:6])
        detail = _loads(row[6])
        return EvaluationRun(**summary.model_dump(), **detail)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()


def _visible(viewer: Viewer) -> tuple[str, tuple[Any, ...]]:
    """The rows ``viewer`` may see: its own, and (in an org) its org's."""
    if viewer.org_id is None:
        return "owner_id = ?", (viewer.user_id,)
    return "(owner_id = ? OR org_id = ?)", (viewer.user_id, viewer.org_id)


def _modes(run: EvaluationRun) -> dict[str, Any]:
    return {name: figures.to_wire() for name, figures in run.modes.items()}


def _summary(row: Any) -> EvaluationSummary:
    run_id, owner_id, org_id, created_at, benchmark, summary_json = row
    summary = _loads(summary_json)
    return EvaluationSummary.model_validate(
        {
            "runId": run_id,
            "ownerId": owner_id,
            "orgId": org_id,
            "createdAt": datetime.fromtimestamp(float(created_at), UTC),
            "benchmark": benchmark,
            "config": summary["config"],
            "modes": summary["modes"],
        }
    )


def _dumps(value: Any) -> str:
    """JSON text of a report's part (integers past 64 bits and lone surrogates included)."""
    return dumps(value).decode()


def _loads(text: str) -> Any:
    # The standard library: orjson would read an integer past 64 bits as a float.
    return json.loads(text)
