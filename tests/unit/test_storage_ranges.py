"""Range validation and clamping, and key rules (pure functions)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import Forbidden, InvalidInput
from rlm.storage.keys import local_key_parts, remote_object_path
from rlm.storage.ranges import ByteRange, clamp_range, split_range, validate_range


def _reason(err: pytest.ExceptionInfo[Exception]) -> str:
    value = err.value
    assert isinstance(value, InvalidInput | Forbidden)
    return str(value.details["reason"])


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        (5, 5, "bad_range"),  # zero-length: s3fs would return the whole object
        (10, 5, "bad_range"),
        (-1, 5, "bad_range"),
        (0, 0, "bad_range"),
        (0, 101, "range_too_large"),
        (True, 5, "bad_range"),
        (0, 5.0, "bad_range"),
    ],
)
def test_validate_range_refuses(start: object, end: object, reason: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_range(start, end, max_bytes=100)  # type: ignore[arg-type]
    assert _reason(err) == reason
    assert err.value.code == "INVALID_INPUT"
    assert err.value.status == 400


def test_validate_range_accepts_up_to_the_maximum() -> None:
    assert validate_range(0, 100, max_bytes=100) == ByteRange(0, 100)
    assert validate_range(7, 8, max_bytes=100).length == 1


@pytest.mark.parametrize(
    ("start", "end", "size", "expected"),
    [
        (0, 10, 100, ByteRange(0, 10)),
        (90, 200, 100, ByteRange(90, 100)),  # crossing EOF: end clamped
        (99, 100, 100, ByteRange(99, 100)),
        (0, 1 << 40, 1, ByteRange(0, 1)),
    ],
)
def test_clamp_range(start: int, end: int, size: int, expected: ByteRange) -> None:
    assert clamp_range(ByteRange(start, end), size) == expected


@pytest.mark.parametrize(("start", "size"), [(100, 100), (150, 100), (0, 0), (3, 0)])
def test_clamp_range_refuses_start_at_or_past_eof(start: int, size: int) -> None:
    with pytest.raises(InvalidInput) as err:
        clamp_range(ByteRange(start, start + 10), size)
    assert _reason(err) == "start_past_eof"
    assert err.value.details["size"] == size


@settings(max_examples=200, database=None, deadline=None)
@given(
    start=st.integers(0, 10_000),
    length=st.integers(1, 10_000),
    part=st.integers(1, 3_000),
)
def test_split_range_covers_exactly(start: int, length: int, part: int) -> None:
    rng = ByteRange(start, start + length)
    parts = split_range(rng, part)
    assert parts[0].start == rng.start
    assert parts[-1].end == rng.end
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    assert all(0 < p.length <= part for p in parts)


@settings(max_examples=200, database=None, deadline=None)
@given(start=st.integers(-5, 300), end=st.integers(-5, 300), size=st.integers(0, 200))
def test_validate_then_clamp_never_yields_an_empty_or_outside_range(
    start: int, end: int, size: int
) -> None:
    try:
        rng = clamp_range(validate_range(start, end, max_bytes=250), size)
    except InvalidInput:
        return
    assert 0 <= rng.start < rng.end <= size
    assert rng.start == start
    assert rng.end == min(end, size)


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("a", ("a",)),
        ("a/b/c.txt", ("a", "b", "c.txt")),
        ("a//b/./c", ("a", "b", "c")),
        ("dir/", ("dir",)),
        ("..a/b..", ("..a", "b..")),
    ],
)
def test_local_key_parts(key: str, parts: tuple[str, ...]) -> None:
    assert local_key_parts(key) == parts


@pytest.mark.parametrize(
    ("key", "error", "reason"),
    [
        ("/etc/passwd", Forbidden, "absolute_key"),
        ("../x", Forbidden, "parent_segment"),
        ("a/../../x", Forbidden, "parent_segment"),
        ("a/..", Forbidden, "parent_segment"),
        ("a\x00b", InvalidInput, "invalid_key"),
        ("", InvalidInput, "invalid_key"),
        (".", InvalidInput, "invalid_key"),
        ("./", InvalidInput, "invalid_key"),
        ("x" * 5000, InvalidInput, "invalid_key"),
    ],
)
def test_local_key_parts_refuses(key: str, error: type[Exception], reason: str) -> None:
    with pytest.raises(error) as err:
        local_key_parts(key)
    assert _reason(err) == reason


def test_remote_object_path() -> None:
    assert remote_object_path("b", "", "k/v") == "b/k/v"
    assert remote_object_path("b", "/pre/", "k") == "b/pre/k"
    assert remote_object_path("b", "pre", "k.v") == "b/pre/k.v"


@pytest.mark.parametrize(
    ("key", "error", "reason"),
    [
        ("/k", Forbidden, "absolute_key"),
        ("a/../k", Forbidden, "parent_segment"),
        ("a//k", InvalidInput, "invalid_key"),
        ("a/./k", InvalidInput, "invalid_key"),
        ("dir/", InvalidInput, "invalid_key"),
        ("k\x00", InvalidInput, "invalid_key"),
    ],
)
def test_remote_object_path_refuses(key: str, error: type[Exception], reason: str) -> None:
    with pytest.raises(error) as err:
        remote_object_path("b", "", key)
    assert _reason(err) == reason


def test_keys_that_are_not_utf8_are_invalid_input(tmp_path: Path) -> None:
    from rlm.storage import StorageService, default_storage_settings

    service = StorageService(default_storage_settings(tmp_path))
    with pytest.raises(InvalidInput) as info:
        service.read("local", "\udbf5abc", 0, 10)
    assert info.value.details["field"] == "key"
