"""Tasks whose input is a file in storage: each leaf reads its own byte range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rlm
from rlm.errors import Forbidden, InvalidInput
from tests.integration.conftest import make_settings, with_test_ops

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> rlm.Hypervisor:
    state: Path = tmp_path_factory.mktemp("storage-engine")
    data = state / "data"
    data.mkdir()
    rng = np.random.default_rng(5)
    rng.integers(-(10**9), 10**9, size=1_000_000, dtype=np.int64).tofile(data / "nums.i64")
    rng.random(200_000).tofile(data / "nums.f64")
    (data / "log.txt").write_text(
        "".join(f"{'ERROR' if i % 7 == 0 else 'INFO'} request {i}\n" for i in range(50_000))
    )
    return with_test_ops(rlm.connect(settings=make_settings(state)))


def _task(type_: str, source: dict[str, object], operation: str, **kw: object) -> dict[str, object]:
    return {
        "type": type_,
        "description": "from storage",
        "input": {"source": source, "operation": operation, **kw},
        "options": {"leafSize": 100_000},
    }


@pytest.mark.parametrize("type_", ["recursive", "parallel", "sequential"])
def test_storage_backed_sum_equals_numpy(engine: rlm.Hypervisor, type_: str) -> None:
    path = engine.settings.state_dir / "data" / "nums.i64"
    expected = int(np.fromfile(path, dtype=np.int64).sum())
    source = {"connector": "local", "key": "nums.i64", "format": "int64"}
    result = engine.execute(_task(type_, source, "sum"))
    assert result.status == "completed", result.error
    assert result.output == expected
    assert result.agent_calls >= 10  # ten leaves of 100k items (and combines, but sequential)


def test_a_byte_range_of_the_file(engine: rlm.Hypervisor) -> None:
    path = engine.settings.state_dir / "data" / "nums.f64"
    values = np.fromfile(path, dtype=np.float64)
    source = {
        "connector": "local",
        "key": "nums.f64",
        "format": "float64",
        "start": 800,
        "end": 80_000,
    }
    result = engine.execute(_task("recursive", source, "sum") | {"options": {"leafSize": 1000}})
    assert result.output == pytest.approx(float(values[100:10_000].sum()), rel=1e-12)


def test_leaves_get_read_only_zero_copy_views(engine: rlm.Hypervisor) -> None:
    source = {"connector": "local", "key": "nums.i64", "format": "int64"}
    result = engine.execute(_task("parallel", source, "probe_chunks"))
    rows = result.output
    assert sum(n for _, _, n in rows) == 1_000_000
    assert all(not writable and is_view for writable, is_view, _ in rows)


def test_lines_split_on_line_boundaries(engine: rlm.Hypervisor) -> None:
    source = {"connector": "local", "key": "log.txt", "format": "lines"}
    request = _task("recursive", source, "grep", params={"pattern": "^ERROR", "count_only": True})
    request["options"] = {"leafSize": 2_000}
    result = engine.execute(request)
    assert result.status == "completed", result.error
    assert result.output == len(range(0, 50_000, 7))
    assert result.decomposition_depth >= 2
    lines = engine.execute(_task("parallel", source, "line_count") | {"options": {"leafSize": 500}})
    assert lines.output == 50_000


def test_bad_sources_are_refused_before_running(engine: rlm.Hypervisor) -> None:
    with pytest.raises(Forbidden):
        engine.execute(
            _task(
                "recursive", {"connector": "local", "key": "../state.db", "format": "int64"}, "sum"
            )
        )
    with pytest.raises(InvalidInput) as info:
        engine.execute(
            _task("recursive", {"connector": "local", "key": "log.txt", "format": "int64"}, "sum")
        )
    assert info.value.code == "INVALID_INPUT"
    with pytest.raises(InvalidInput) as info:
        engine.execute(
            _task("recursive", {"connector": "local", "key": "log.txt", "format": "lines"}, "sum")
        )
    assert info.value.details["field"] == "input.source.format"
    with pytest.raises(InvalidInput):
        engine.execute(
            _task("recursive", {"connector": "local", "key": "missing", "format": "int64"}, "sum")
        )
