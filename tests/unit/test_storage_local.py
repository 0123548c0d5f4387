"""The local connector: methods, zero-copy maps, caches, changed and truncated files."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm.errors import Forbidden, InternalError, InvalidInput, RLMError
from rlm.models.storage import StorageReadResponse
from rlm.storage import (
    LocalConnector,
    StorageService,
    StorageSettings,
    encode_base64,
)
from rlm.storage.confine import openat2_available
from rlm.storage.local import LocalStore

METHODS = ("mmap", "direct", "async", "standard")
SIZE = 300_017  # Not a multiple of any part or page size.


@pytest.fixture(scope="module")
def payload() -> bytes:
    return np.random.default_rng(7).integers(0, 256, SIZE, dtype=np.uint8).tobytes()


@pytest.fixture(
    params=[
        pytest.param(
            True,
            id="openat2",
            marks=pytest.mark.skipif(not openat2_available(), reason="no openat2"),
        ),
        pytest.param(False, id="nofollow-walk"),
    ]
)
def service(
    request: pytest.FixtureRequest, tmp_path: Path, payload: bytes
) -> Iterator[StorageService]:
    root = tmp_path / "data"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "blob.bin").write_bytes(payload)
    (root / "empty").write_bytes(b"")
    settings_ = StorageSettings(
        connectors={"local": LocalConnector(root=root, revalidate_s=0.0)},
        async_part_bytes=4096,
        max_read_bytes=1 << 20,
    )
    svc = StorageService(settings_, use_openat2=request.param)
    try:
        yield svc
    finally:
        svc.close()


def _store(svc: StorageService) -> LocalStore:
    store = svc._store("local")
    assert isinstance(store, LocalStore)
    return store


@settings(
    max_examples=60,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_every_method_returns_the_files_true_bytes(
    service: StorageService, payload: bytes, data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, SIZE - 1), label="start")
    end = data.draw(st.integers(start + 1, min(start + (1 << 20), SIZE + 5000)), label="end")
    expected = payload[start:end]
    for method in (*METHODS, "auto"):
        result = service.read("local", "dir/blob.bin", start, end, method)
        assert bytes(result.data) == expected, method
        assert (result.start, result.end, result.size) == (start, min(end, SIZE), SIZE)
        assert result.method == ("mmap" if method == "auto" else method)
        assert result.latency_ms >= 0


def test_mmap_reads_are_zero_copy_read_only_views_of_one_cached_map(
    service: StorageService,
) -> None:
    a = service.read("local", "dir/blob.bin", 0, 8192, "mmap").data
    b = service.read("local", "dir/blob.bin", 4096, 12288, "mmap").data
    assert isinstance(a, memoryview)
    assert isinstance(b, memoryview)
    assert a.readonly
    view_a = np.frombuffer(a, dtype=np.uint8)
    view_b = np.frombuffer(b, dtype=np.uint8)
    assert np.shares_memory(view_a, view_b)  # both slice the same cached map
    assert not view_a.flags.writeable
    assert len(_store(service)._maps) == 1


def test_a_changed_file_falls_back_to_direct_then_is_mapped_again(
    service: StorageService, tmp_path: Path, payload: bytes
) -> None:
    path = tmp_path / "data" / "dir" / "blob.bin"
    assert service.read("local", "dir/blob.bin", 0, 100, "mmap").method == "mmap"
    with open(path, "ab") as f:
        f.write(b"tail")
    changed = service.read("local", "dir/blob.bin", SIZE - 2, SIZE + 10, "mmap")
    assert changed.method == "direct"
    assert bytes(changed.data) == payload[-2:] + b"tail"
    again = service.read("local", "dir/blob.bin", SIZE - 2, SIZE + 10, "mmap")
    assert again.method == "mmap"
    assert bytes(again.data) == payload[-2:] + b"tail"


def test_a_replaced_file_is_seen_after_revalidation(
    service: StorageService, tmp_path: Path
) -> None:
    path = tmp_path / "data" / "dir" / "blob.bin"
    service.read("local", "dir/blob.bin", 0, 10, "mmap")
    fresh = tmp_path / "data" / "new.bin"
    fresh.write_bytes(b"replacement")
    os.replace(fresh, path)
    for method in METHODS:
        assert bytes(service.read("local", "dir/blob.bin", 0, 11, method).data) == b"replacement"


def test_descriptor_and_map_caches_are_bounded(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(6):
        (root / f"f{i}").write_bytes(bytes([i]) * 100)
    config = LocalConnector(root=root, max_open_files=2, max_maps=3)
    fds_before = len(os.listdir("/proc/self/fd"))
    with StorageService(StorageSettings(connectors={"local": config})) as svc:
        for i in range(6):
            assert bytes(svc.read("local", f"f{i}", 0, 100).data) == bytes([i]) * 100
        store = _store(svc)
        assert len(store._handles) == 2
        assert len(store._maps) == 3
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_refusals_carry_reasons(service: StorageService) -> None:
    cases: list[tuple[str, str, int, int, str, type[RLMError], str]] = [
        ("local", "dir/blob.bin", 5, 5, "mmap", InvalidInput, "bad_range"),
        ("local", "dir/blob.bin", 0, (1 << 20) + 1, "mmap", InvalidInput, "range_too_large"),
        ("local", "dir/blob.bin", SIZE, SIZE + 1, "mmap", InvalidInput, "start_past_eof"),
        ("local", "empty", 0, 1, "direct", InvalidInput, "start_past_eof"),
        ("local", "missing", 0, 1, "mmap", InvalidInput, "missing_key"),
        ("local", "dir", 0, 1, "direct", InvalidInput, "not_regular_file"),
        ("nowhere", "dir/blob.bin", 0, 1, "auto", InvalidInput, "unknown_connector"),
        ("local", "dir/blob.bin", 0, 1, "turbo", InvalidInput, "unsupported_method"),
        ("local", "../etc/passwd", 0, 1, "mmap", Forbidden, "parent_segment"),
        ("local", "/etc/passwd", 0, 1, "mmap", Forbidden, "absolute_key"),
    ]
    for connector, key, start, end, method, error, reason in cases:
        with pytest.raises(error) as err:
            service.read(connector, key, start, end, method)
        assert err.value.details["reason"] == reason, (key, start, end, method)


def test_default_root_is_created_and_closed_service_refuses(tmp_path: Path) -> None:
    from rlm.storage import default_storage_settings

    svc = StorageService(default_storage_settings(tmp_path / "state"))
    with pytest.raises(InvalidInput):
        svc.read("local", "nothing-yet", 0, 1)
    assert (tmp_path / "state" / "data").is_dir()
    (tmp_path / "state" / "data" / "x").write_bytes(b"xyz")
    assert bytes(svc.read("local", "x", 1, 3).data) == b"yz"
    assert svc.size("local", "x") == 3
    svc.close()
    with pytest.raises(InternalError):
        svc.read("local", "x", 0, 1)


def test_encode_base64_and_wire_body(service: StorageService, payload: bytes) -> None:
    result = service.read("local", "dir/blob.bin", 3, 1003, "mmap")
    assert encode_base64(result.data) == base64.b64encode(payload[3:1003]).decode()
    body = result.to_wire()
    assert set(body) == {"data", "latencyMs", "method", "objectSize"}
    assert base64.b64decode(body["data"]) == payload[3:1003]
    assert body["method"] == "mmap"
    assert body["objectSize"] == SIZE
    wire = StorageReadResponse.model_validate(body)
    assert wire.object_size == SIZE
    assert wire.method == "mmap"


_TRUNCATE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from rlm.errors import InvalidInput
    from rlm.storage import LocalConnector, StorageService, StorageSettings

    root = Path(sys.argv[1])
    path = root / "big.bin"
    path.write_bytes(b"x" * (8 << 20))
    svc = StorageService(StorageSettings(connectors={"local": LocalConnector(root=root)}))
    first = svc.read("local", "big.bin", 0, 1 << 20, "mmap")
    assert first.method == "mmap" and bytes(first.data[-3:]) == b"xxx"
    del first
    os.truncate(path, 4096)  # Pages of the cached map past 4096 now raise SIGBUS if touched.
    try:
        svc.read("local", "big.bin", 1 << 20, 2 << 20, "mmap")
        print("NO ERROR")
    except InvalidInput as err:
        assert err.details["reason"] == "start_past_eof", err.details
    got = svc.read("local", "big.bin", 0, 1 << 20, "mmap")  # fstat shows the change
    assert got.method == "direct" and got.end == 4096 and bytes(got.data) == b"x" * 4096, got
    got = svc.read("local", "big.bin", 0, 1 << 20, "mmap")  # stable again: a new map
    assert got.method == "mmap" and got.end == 4096 and bytes(got.data) == b"x" * 4096, got
    del got
    os.truncate(path, 1000)
    got = svc.read("local", "big.bin", 0, 4096, "mmap")
    assert got.method == "direct" and bytes(got.data) == b"x" * 1000, got
    svc.close()
    print("OK")
    """
)


def test_a_file_truncated_under_its_map_falls_back_instead_of_sigbus(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.strip() == "OK"


_RESIDUAL_RACE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from rlm.storage import LocalConnector, StorageService, StorageSettings

    root = Path(sys.argv[1])
    (root / "big.bin").write_bytes(b"x" * (1 << 20))
    svc = StorageService(StorageSettings(connectors={"local": LocalConnector(root=root)}))
    view = svc.read("local", "big.bin", 0, 1 << 20, "mmap").data
    os.truncate(root / "big.bin", 0)
    bytes(view)  # Touches pages past the new end of file.
    print("survived")
    """
)


def test_the_documented_residual_race_a_view_held_across_a_truncation(tmp_path: Path) -> None:
    """Truncating a file while a caller holds an mmap view still raises SIGBUS.

    No check can prevent it (the docstring of rlm.storage.local says so): connector roots
    must hold files that are replaced, never truncated in place. This test pins the
    limitation so a change in it is noticed.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _RESIDUAL_RACE_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGBUS, (proc.returncode, proc.stdout, proc.stderr)


def test_importing_storage_does_not_import_ray() -> None:
    code = "import sys, rlm.storage; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


def _isort_key(name: str) -> tuple[int, str]:
    # Ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    group = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return group, name


def test_public_names_are_sorted_and_exist() -> None:
    import importlib

    import rlm.storage

    modules = [
        "access",
        "confine",
        "inputs",
        "keys",
        "local",
        "loop",
        "ranges",
        "reasons",
        "remote",
        "service",
        "settings",
        "store",
    ]
    for name in ["", *modules]:
        module = importlib.import_module(f"rlm.storage{'.' + name if name else ''}")
        exported = module.__all__
        assert exported == sorted(exported, key=_isort_key), name
        for attr in exported:
            assert hasattr(module, attr), (name, attr)
    assert "StorageService" in rlm.storage.__all__


def test_concurrent_reads_with_tiny_caches_stay_correct(tmp_path: Path) -> None:
    """Evicting descriptors and maps under reads in flight never closes them early."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    files = {f"f{i}": rng.integers(0, 256, 50_000 + i, dtype=np.uint8).tobytes() for i in range(5)}
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    config = LocalConnector(root=tmp_path, max_open_files=1, max_maps=1, revalidate_s=0.0)
    settings_ = StorageSettings(connectors={"local": config}, async_part_bytes=8192)

    def _work(seed: int) -> None:
        local = np.random.default_rng(seed)
        for _ in range(40):
            name = f"f{int(local.integers(0, 5))}"
            start = int(local.integers(0, 50_000))
            end = start + int(local.integers(1, 20_000))
            method = METHODS[int(local.integers(0, 4))]
            got = svc.read("local", name, start, end, method)
            assert bytes(got.data) == files[name][start:end], (name, start, end, method)

    with StorageService(settings_) as svc, ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(_work, seed) for seed in range(16)]:
            future.result()
