"""Idempotency keys of ``POST /v1/execute``: a retried request answers the task of the first.

A caller that sends ``Idempotency-Key: K`` with an execute (or an async submit) gets, for every
later request with the same key and the same body within :data:`IDEMPOTENCY_TTL_S`, the task the
first request created — its result, or its current status while it runs — and never a second
run or a second charge. The same key with another body is refused (400): it names another
request.

A key is scoped to its caller (the user id), so two users cannot collide or probe each other's
keys. The entry is written in the same transaction as the task's first record
(:meth:`rlm.tasks.store.TaskStore.put`): after a crash there is either both a task and its key,
or neither. Entries older than the time-to-live are ignored and purged on the engine's
heartbeat, so the table stays bounded by a day of keyed requests.

The body's fingerprint is a SHA-256 of its canonical JSON (keys sorted, no whitespace), so a
client may reformat its JSON between retries; values must be equal.

Example:
    >>> key = IdempotencyKey.of("alice", "k-1", {"type": "recursive", "input": {}})
    >>> key.fingerprint == fingerprint({"input": {}, "type": "recursive"})
    True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from rlm.errors import InvalidInput
from rlm.jsonable import dumps

__all__ = [
    "IDEMPOTENCY_HEADER",
    "IDEMPOTENCY_TTL_S",
    "MAX_KEY_LENGTH",
    "REPLAYED_HEADER",
    "SCHEMA",
    "IdempotencyKey",
    "IdempotentTask",
    "fingerprint",
]

#: How long a key names its task (24 h, as the API's retries are meant to be short).
IDEMPOTENCY_TTL_S: Final = 86_400.0
#: The longest key accepted.
MAX_KEY_LENGTH: Final = 200
#: The request header carrying the key.
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
#: The response header saying an answer is the first request's task, not a new one.
REPLAYED_HEADER: Final = "Idempotent-Replayed"

#: The table, in the task store's file.
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);
"""


def fingerprint(body: Any) -> str:
    """The SHA-256 (hex) of ``body``'s canonical JSON: keys sorted, no whitespace.

    Args:
        body: The request body as parsed JSON.
    """
    return hashlib.sha256(dumps(body, sort_keys=True)).hexdigest()


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A request's key, its caller, and the fingerprint of its body.

    Attributes:
        owner: Whose key it is (the caller's user id).
        key: The ``Idempotency-Key`` header's value.
        fingerprint: :func:`fingerprint` of the request body.
    """

    owner: str
    key: str
    fingerprint: str

    @classmethod
    def of(cls, owner: str, key: str, body: Any) -> IdempotencyKey:
        """Check ``key`` and fingerprint ``body``.

        Raises:
            InvalidInput: the key is empty, longer than :data:`MAX_KEY_LENGTH` or not
                printable ASCII.
        """
        return cls(owner, check_key(key), fingerprint(body))


def check_key(key: str) -> str:
    """Return ``key`` if it is 1-200 printable ASCII characters.

    Raises:
        InvalidInput: naming the ``Idempotency-Key`` header.
    """
    if not (0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()):
        raise InvalidInput(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            {"maxLength": MAX_KEY_LENGTH},
            field=IDEMPOTENCY_HEADER,
        )
    return key


@dataclass(frozen=True, slots=True)
class IdempotentTask:
    """The task a key names.

    Attributes:
        task_id: The task the first request created.
        fingerprint: The first request's body fingerprint.
        created_at: When the key was first used (epoch seconds).
    """

    task_id: str
    fingerprint: str
    created_at: float

    def check(self, key: IdempotencyKey) -> None:
        """Refuse ``key`` if it came with another body than the first request's.

        Raises:
            InvalidInput: 400, naming the header, with the first request's ``taskId``.
        """
        if key.fingerprint != self.fingerprint:
            raise InvalidInput(
                f"{IDEMPOTENCY_HEADER} {key.key!r} was already used with a different request "
                "body; use a new key for a new request",
                {"idempotencyKey": key.key, "taskId": self.task_id},
                field=IDEMPOTENCY_HEADER,
            )
