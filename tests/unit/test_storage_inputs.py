"""Storage-backed task inputs: splitting on the driver, zero-copy chunks in the leaves."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rlm.errors import InvalidInput
from rlm.models import parse_model
from rlm.storage import (
    LocalConnector,
    SourceSpec,
    StorageSettings,
    read_source_chunk,
    split_source,
)
from tests.counting_storage import CountingService


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def service(root: Path) -> Iterator[CountingService]:
    svc = CountingService(
        StorageSettings(connectors={"local": LocalConnector(root=root)}, max_read_bytes=1 << 20)
    )
    try:
        yield svc
    finally:
        svc.close()


def _spec(key: str, fmt: str, **kw: Any) -> SourceSpec:
    return SourceSpec.model_validate({"connector": "local", "key": key, "format": fmt, **kw})


def test_int64_chunks_are_read_only_zero_copy_views_of_the_map(
    service: CountingService, root: Path
) -> None:
    values = np.arange(-500_000, 500_000, dtype="<i8")
    (root / "numbers.i64").write_bytes(values.tobytes())
    spec = _spec("numbers.i64", "int64")
    ranges = split_source(service, spec, 6)
    assert len(ranges) == 6
    assert service.bytes_read == 0  # Numbers are split by arithmetic alone.
    assert all(a % 8 == 0 and b % 8 == 0 for a, b in ranges)
    whole = service.read("local", "numbers.i64", 0, values.nbytes, max_bytes=values.nbytes)
    map_bytes = np.frombuffer(whole.data, dtype=np.uint8)
    chunks = []
    for start, end in ranges:
        arr = read_source_chunk(service, spec, start, end)
        assert isinstance(arr, np.ndarray)
        assert arr.dtype == np.dtype("<i8")
        assert not arr.flags.writeable
        assert np.shares_memory(arr, map_bytes)  # A view of the map, not a copy.
        chunks.append(arr)
    assert np.array_equal(np.concatenate(chunks), values)
    with pytest.raises(ValueError):
        chunks[0][0] = 1


def test_float64_chunks_with_a_byte_window(service: CountingService, root: Path) -> None:
    values = np.linspace(0.0, 1.0, 10_001, dtype="<f8")
    (root / "x.f64").write_bytes(values.tobytes())
    spec = _spec("x.f64", "float64", start=800, end=8 * 9_000)
    ranges = split_source(service, spec, 4)
    got = np.concatenate([read_source_chunk(service, spec, a, b) for a, b in ranges])
    assert np.array_equal(got, values[100:9_000])
    for method in ("direct", "async", "standard"):
        arr = read_source_chunk(service, spec, 800, 1600, method=method)
        assert isinstance(arr, np.ndarray)
        assert not arr.flags.writeable
        assert np.array_equal(arr, values[100:200])


@pytest.mark.parametrize(
    ("content", "kw"),
    [(b"\x00" * 801, {}), (b"\x00" * 800, {"start": 4}), (b"\x00" * 800, {"end": 796 + 3})],
)
def test_misaligned_numbers_are_refused(
    service: CountingService, root: Path, content: bytes, kw: dict[str, int]
) -> None:
    (root / "bad.i64").write_bytes(content)
    with pytest.raises(InvalidInput) as err:
        split_source(service, _spec("bad.i64", "int64", **kw), 2)
    assert err.value.details["reason"] == "misaligned"


def _reference_lines(data: bytes, start: int, end: int) -> list[str]:
    """Lines starting in [start, end): the semantics split_source promises."""
    out: list[str] = []
    pos = 0
    for raw in data.split(b"\n"):
        if start <= pos < end and not (raw == b"" and pos == len(data)):
            out.append(raw.decode("utf-8", "replace").removesuffix("\r"))
        pos += len(raw) + 1
    return out


@settings(
    max_examples=60,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=40), max_size=60
    ),
    trailing=st.booleans(),
    parts=st.integers(1, 9),
    window=st.integers(1, 64),
    bounds=st.tuples(st.integers(0, 3000), st.integers(1, 3000)),
)
def test_lines_split_on_line_boundaries_and_lose_nothing(
    service: CountingService,
    root: Path,
    lines: list[str],
    trailing: bool,
    parts: int,
    window: int,
    bounds: tuple[int, int],
) -> None:
    data = "\n".join(lines).encode() + (b"\n" if trailing and lines else b"")
    (root / "t.txt").write_bytes(data)
    size = len(data)
    if size == 0:
        assert split_source(service, _spec("t.txt", "lines"), parts) == []
        return
    start, end = sorted(bounds)
    start = min(start, size - 1)
    end = max(end, start + 1)
    spec = _spec("t.txt", "lines", start=start, end=end)
    ranges = split_source(service, spec, parts, window=window)
    assert len(ranges) <= parts
    assert all(a < b for a, b in ranges)
    assert all(r1[1] == r2[0] for r1, r2 in itertools.pairwise(ranges))
    got: list[str] = []
    for a, b in ranges:
        chunk = read_source_chunk(service, spec, a, b)
        assert isinstance(chunk, list)
        got.extend(chunk)
    assert got == _reference_lines(data, start, min(end, size))


def test_splitting_lines_reads_windows_not_the_file(service: CountingService, root: Path) -> None:
    text = b"".join(b"%08d some log line with words\n" % i for i in range(200_000))
    (root / "big.log").write_bytes(text)  # ~7 MB
    parts, window = 16, 4096
    ranges = split_source(service, _spec("big.log", "lines"), parts, window=window)
    assert len(ranges) == parts
    assert service.bytes_read <= parts * window
    assert ranges[0][0] == 0
    assert ranges[-1][1] == len(text)
    assert all(text[a - 1 : a] == b"\n" for a, _ in ranges[1:])


def test_a_line_longer_than_the_limit_is_refused(service: CountingService, root: Path) -> None:
    (root / "one-line.txt").write_bytes(b"x" * 100_000 + b"\n")
    spec = _spec("one-line.txt", "lines")
    with pytest.raises(InvalidInput) as err:
        split_source(service, spec, 4, window=1024, max_line_bytes=10_000)
    assert err.value.details["reason"] == "invalid_format"
    assert split_source(service, spec, 4, window=1024 * 64) == [(0, 100_001)]


def test_bytes_source(service: CountingService, root: Path) -> None:
    data = bytes(range(256)) * 40
    (root / "raw").write_bytes(data)
    spec = _spec("raw", "bytes", start=100)
    ranges = split_source(service, spec, 3)
    assert [len(range(a, b)) for a, b in ranges] == [3380, 3380, 3380]
    chunks = [read_source_chunk(service, spec, a, b) for a, b in ranges]
    assert all(isinstance(c, bytes) for c in chunks)
    assert b"".join(c for c in chunks if isinstance(c, bytes)) == data[100:]
    (root / "none").write_bytes(b"")
    assert split_source(service, _spec("none", "bytes"), 3) == []
    assert split_source(service, _spec("raw", "bytes", start=10, end=12), 5) == [
        (10, 11),
        (11, 12),
    ]


def test_arrow_ipc_file_splits_by_record_batch_zero_copy(
    service: CountingService, root: Path
) -> None:
    table = pa.table(
        {"x": pa.array(range(10_000), pa.int64()), "s": [str(i) for i in range(10_000)]}
    )
    with pa.OSFile(str(root / "t.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        for batch in table.to_batches(max_chunksize=1000):
            w.write_batch(batch)
    spec = _spec("t.arrow", "arrow")
    ranges = split_source(service, spec, 3)
    assert ranges == [(0, 3), (3, 6), (6, 10)]
    allocated = pa.total_allocated_bytes()
    parts = [read_source_chunk(service, spec, a, b) for a, b in ranges]
    assert pa.total_allocated_bytes() == allocated  # Batches point into the map.
    assert pa.concat_tables(parts).equals(table)
    with pytest.raises(InvalidInput):
        read_source_chunk(service, spec, 8, 11)
    (root / "not.arrow").write_bytes(b"definitely not arrow")
    with pytest.raises(InvalidInput) as err:
        split_source(service, _spec("not.arrow", "arrow"), 2)
    assert err.value.details["reason"] == "invalid_format"


def test_source_spec_on_the_wire() -> None:
    spec = parse_model(
        SourceSpec, {"connector": "s3", "key": "a/b.txt", "start": 0, "end": 10, "format": "lines"}
    )
    assert spec.to_wire() == {
        "connector": "s3",
        "key": "a/b.txt",
        "start": 0,
        "end": 10,
        "format": "lines",
    }
    for bad in (
        {"connector": "s3", "key": "k", "format": "csv"},
        {"connector": "s3", "key": "k", "format": "lines", "start": 5, "end": 5},
        {"connector": "s3", "key": "k", "format": "arrow", "start": 0},
        {"connector": "s3", "key": "k"},
    ):
        with pytest.raises(InvalidInput):
            parse_model(SourceSpec, bad)
    with pytest.raises(ValidationError):
        SourceSpec.model_validate({"connector": "", "key": "k", "format": "bytes"})
