"""Who may read which keys of a connector: the access policy of tenants' reads.

Every connector reads with the service's own credentials, so without a policy any token
would read every key. A connector's :class:`AccessPolicy` says what a tenant may read, both
through ``POST /storage/read`` and as a task's ``input.source``; everything else is refused
(default deny) before storage is touched, so a refusal reveals nothing about what exists:

* ``user_prefix`` (e.g. ``users/{user}/``): each user reads the keys under its own prefix,
  ``{user}`` being the token's ``sub``;
* ``org_prefix`` (e.g. ``orgs/{org}/``): each org's members read under the org's prefix,
  ``{org}`` being the token's ``org`` claim;
* ``public_prefix`` (e.g. ``public/``; ``""`` for the whole connector): every token with
  ``rlm:read``;
* ``orgs``: orgs whose members read the whole connector (a bucket of their own).

A prefix is substituted only with an id that is one plain path segment (no ``/``, not ``.``
or ``..``): a user named ``alice/x`` has no prefix of its own rather than a share of alice's.
Keys are compared by their segments, as the local connector resolves them (empty and ``.``
segments dropped); a key with a ``..`` segment is refused outright.

Python callers of the engine (``rlm.connect()``) are trusted, like a ``ray job``, and read
without a policy, as they may read the state directory itself.

Example:
    >>> policy = AccessPolicy.tenant_default()
    >>> readable_prefixes(policy, StorageReader("alice", "acme"))
    ['users/alice/', 'orgs/acme/', 'public/']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rlm.errors import Forbidden
from rlm.storage.reasons import Reason, forbidden

__all__ = ["AccessPolicy", "StorageReader", "check_access", "readable_prefixes"]

#: An id that may stand for ``{user}`` or ``{org}`` in a prefix: one plain path segment.
_SEGMENT = re.compile(r"^[A-Za-z0-9_@:+=,~-][A-Za-z0-9_.@:+=,~-]*$")


@dataclass(frozen=True, slots=True)
class StorageReader:
    """Who reads: the token's ``sub`` and its ``org`` claim.

    Attributes:
        user_id: The user.
        org_id: Its org, if the token names one.
    """

    user_id: str
    org_id: str | None = None


def _check_prefix(value: str | None, placeholder: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith("/") or (value and not value.endswith("/")):
        raise ValueError("a prefix is relative and ends with '/' (or is empty)")
    segments = value.split("/")[:-1]
    if any(seg in ("", ".", "..") for seg in segments):
        raise ValueError("a prefix has no empty, '.' or '..' segments")
    if placeholder is not None and value.count(placeholder) != 1:
        raise ValueError(f"the prefix must contain {placeholder} exactly once")
    if placeholder is not None and placeholder not in segments:
        raise ValueError(f"{placeholder} must be a whole segment of the prefix")
    return value


class AccessPolicy(BaseModel):
    """What tenants may read of one connector (nothing, by default).

    Attributes:
        user_prefix: Keys each user reads: a prefix with ``{user}`` as one of its segments,
            e.g. ``users/{user}/``.
        org_prefix: Keys each org's members read: a prefix with ``{org}`` as one of its
            segments, e.g. ``orgs/{org}/``.
        public_prefix: Keys every token with ``rlm:read`` reads, e.g. ``public/``; ``""``
            opens the whole connector.
        orgs: Orgs whose members read every key of the connector (a bucket of their own).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_prefix: str | None = None
    org_prefix: str | None = None
    public_prefix: str | None = None
    orgs: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = ()

    @field_validator("user_prefix")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return _check_prefix(value, "{user}")

    @field_validator("org_prefix")
    @classmethod
    def _org(cls, value: str | None) -> str | None:
        return _check_prefix(value, "{org}")

    @field_validator("public_prefix")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is not None and ("{" in value or "}" in value):
            raise ValueError("the public prefix takes no placeholder")
        return _check_prefix(value, None)

    @classmethod
    def tenant_default(cls) -> AccessPolicy:
        """Each user under ``users/<user>/``, each org under ``orgs/<org>/``, and
        ``public/`` for everyone: the embedded ``local`` connector's policy."""
        return cls(user_prefix="users/{user}/", org_prefix="orgs/{org}/", public_prefix="public/")


def readable_prefixes(policy: AccessPolicy, reader: StorageReader) -> list[str]:
    """The key prefixes ``reader`` may read (``""``: every key), most personal first."""
    if reader.org_id is not None and reader.org_id in policy.orgs:
        return [""]
    found: list[str] = []
    if policy.user_prefix is not None and _SEGMENT.match(reader.user_id):
        found.append(policy.user_prefix.replace("{user}", reader.user_id))
    if policy.org_prefix is not None and reader.org_id and _SEGMENT.match(reader.org_id):
        found.append(policy.org_prefix.replace("{org}", reader.org_id))
    if policy.public_prefix is not None:
        found.append(policy.public_prefix)
    return found


def _segments(key: str) -> list[str] | None:
    parts = [p for p in key.split("/") if p not in ("", ".")]
    return None if ".." in parts else parts


def check_access(connector: str, policy: AccessPolicy, key: str, reader: StorageReader) -> None:
    """Refuse unless ``reader`` may read ``key`` of ``connector``.

    Raises:
        Forbidden: ``details.reason == "not_permitted"``, with the prefixes the reader may
            read; nothing about whether the key exists.
    """
    prefixes = readable_prefixes(policy, reader)
    parts = _segments(key)
    if parts is not None:
        for prefix in prefixes:
            wanted = prefix.split("/")[:-1]  # "a/b/" -> ["a", "b"]; "" -> []
            if len(parts) > len(wanted) and parts[: len(wanted)] == wanted:
                return
    raise _refused(connector, key, prefixes)


def _refused(connector: str, key: str, prefixes: list[str]) -> Forbidden:
    where = ", ".join(repr(p) for p in prefixes) if prefixes else "nothing"
    return forbidden(
        Reason.NOT_PERMITTED,
        f"your token may not read this key of connector {connector!r} (it may read: {where})",
        connector=connector,
        key=key,
        readablePrefixes=prefixes,
    )
