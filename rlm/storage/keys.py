"""Keys: the part of a request that names an object beneath a connector's root.

A key is relative. Absolute keys and ``..`` segments are refused up front (403) for every
connector, before any file system or bucket sees them; NUL bytes and empty keys are
malformed (400). Local keys are then resolved atomically beneath the root by
:mod:`rlm.storage.confine`, which also catches escapes through symbolic links.
"""

from __future__ import annotations

from rlm.storage.reasons import Reason, forbidden, invalid

__all__ = ["MAX_KEY_LENGTH", "local_key_parts", "remote_object_path"]

MAX_KEY_LENGTH = 4096


def _check_common(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise invalid(Reason.INVALID_KEY, "the key must be a non-empty string", field="key")
    if len(key) > MAX_KEY_LENGTH:
        raise invalid(
            Reason.INVALID_KEY, f"the key is longer than {MAX_KEY_LENGTH} characters", field="key"
        )
    if "\x00" in key:
        raise invalid(Reason.INVALID_KEY, "the key contains a NUL byte", field="key")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates name no file and no object; refuse them before any encoder sees them.
        raise invalid(Reason.INVALID_KEY, "the key is not valid UTF-8", field="key") from None
    if key.startswith("/"):
        raise forbidden(
            Reason.ABSOLUTE_KEY, "keys are relative to the connector's root", field="key"
        )
    if ".." in key.split("/"):
        raise forbidden(Reason.PARENT_SEGMENT, "keys may not contain '..' segments", field="key")


def local_key_parts(key: str) -> tuple[str, ...]:
    """Split a local key into path components, refusing what could leave the root.

    Empty and ``.`` segments are dropped, as the kernel would.

    Args:
        key: The request's key.

    Returns:
        At least one component, none of them ``""``, ``.`` or ``..``.

    Raises:
        Forbidden: ``absolute_key`` or ``parent_segment``.
        InvalidInput: ``invalid_key`` (empty, NUL, too long, no component).
    """
    _check_common(key)
    parts = tuple(p for p in key.split("/") if p not in ("", "."))
    if not parts:
        raise invalid(Reason.INVALID_KEY, "the key names no file", field="key")
    return parts


def remote_object_path(bucket: str, prefix: str, key: str) -> str:
    """The ``bucket/prefix/key`` path of an object, for pyarrow and fsspec alike.

    Empty segments, ``.`` segments and a trailing ``/`` are refused rather than normalised:
    object stores treat ``a//b`` and ``a/b`` as different keys while fsspec and pyarrow
    normalise them differently, so the bytes read would depend on the method.

    Args:
        bucket: The connector's bucket.
        prefix: The connector's key prefix (may be empty).
        key: The request's key.

    Returns:
        The path, without a scheme.

    Raises:
        Forbidden: ``absolute_key`` or ``parent_segment``.
        InvalidInput: ``invalid_key``.
    """
    _check_common(key)
    if any(seg in ("", ".") for seg in key.split("/")):
        raise invalid(
            Reason.INVALID_KEY, "the key has an empty or '.' segment, or ends with '/'", field="key"
        )
    clean_prefix = prefix.strip("/")
    return f"{bucket}/{clean_prefix}/{key}" if clean_prefix else f"{bucket}/{key}"
