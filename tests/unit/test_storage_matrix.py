"""The range-semantics matrix for every connector x method, against real servers.

S3 is moto's ``ThreadedMotoServer`` and GCS is ``gcp-storage-emulator``, both on 127.0.0.1
on ephemeral ports, started here and stopped at the end of the session. The GCS emulator
runs in a subprocess: pyarrow's GCS client did not make progress against it in the same
process (its HTTP server thread never got to answer).
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import Forbidden, InvalidInput, RLMError
from rlm.storage import (
    GcsConnector,
    LocalConnector,
    S3Connector,
    SourceSpec,
    StorageService,
    StorageSettings,
    read_source_chunk,
    split_source,
)

BUCKET = "rlm-test"
MAX_READ = 1 << 20
BIG = 200_003
OBJECTS: dict[str, bytes] = {
    "small": bytes(range(256)) * 3 + b"tail",  # 772 bytes
    "empty": b"",
    "nested/deep/big.bin": np.random.default_rng(11)
    .integers(0, 256, BIG, dtype=np.uint8)
    .tobytes(),
    "text/lines.txt": b"".join(f"line {i} {'x' * (i % 37)}\n".encode() for i in range(3000)),
}
CONNECTOR_METHODS: dict[str, tuple[str, ...]] = {
    "local": ("mmap", "direct", "async", "standard"),
    "s3": ("direct", "async", "standard"),
    "gcs": ("direct", "async", "standard"),
}
PAIRS = [(c, m) for c, methods in CONNECTOR_METHODS.items() for m in methods]

_GCS_EMULATOR = textwrap.dedent(
    """
    import sys, threading
    from functools import partial
    from http.server import ThreadingHTTPServer
    from gcp_storage_emulator.handlers import buckets
    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    storage = Storage(use_memory_fs=True)
    buckets.create_bucket(sys.argv[1], storage)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RequestHandler, storage))
    httpd.daemon_threads = True
    print(httpd.server_address[1], flush=True)
    # Stops when the test closes our stdin.
    threading.Thread(target=lambda: (sys.stdin.read(), httpd.shutdown()), daemon=True).start()
    httpd.serve_forever()
    """
)


def _require(module: str, requirement: str) -> None:
    # Fail loudly: a skipped matrix would hide that S3 or GCS went untested.
    try:
        importlib.import_module(module)
    except ImportError as err:
        pytest.fail(f"{module} is needed by these tests: pip install {requirement} ({err})")


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake credentials, and no config file or instance metadata to fall back on."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        yield


@pytest.fixture(scope="session")
def s3_endpoint(aws_env: None) -> Iterator[str]:
    _require("moto.server", "'moto[server]>=5,<6'")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        import boto3  # type: ignore[import-untyped]

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for key, body in OBJECTS.items():
            client.put_object(Bucket=BUCKET, Key=f"pre/{key}", Body=body)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    _require("gcp_storage_emulator", "gcp-storage-emulator==2026.7.19")
    proc = subprocess.Popen(
        [sys.executable, "-c", _GCS_EMULATOR, BUCKET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            pytest.fail(f"the GCS emulator did not start (exit code {proc.poll()})")
        endpoint = f"http://127.0.0.1:{line}"
        from gcsfs.core import GCSFileSystem

        fs = GCSFileSystem(token="anon", endpoint_url=endpoint, skip_instance_cache=True)
        for key, body in OBJECTS.items():
            fs.pipe_file(f"{BUCKET}/{key}", body)
        yield endpoint
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def local_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("local")
    for key, body in OBJECTS.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
    return root


@pytest.fixture(scope="session")
def put(s3_endpoint: str, gcs_endpoint: str, local_root: Path) -> Callable[[str, str, bytes], None]:
    """Write an object through each backend's own client (not through the code under test)."""
    import boto3  # type: ignore[import-untyped]
    from gcsfs.core import GCSFileSystem

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    gcs = GCSFileSystem(token="anon", endpoint_url=gcs_endpoint, skip_instance_cache=True)

    def _put(connector: str, key: str, body: bytes) -> None:
        if connector == "s3":
            s3.put_object(Bucket=BUCKET, Key=f"pre/{key}", Body=body)
        elif connector == "gcs":
            gcs.pipe_file(f"{BUCKET}/{key}", body)
        else:
            path = local_root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)  # In place: the same inode, truncated.

    return _put


@pytest.fixture(scope="session")
def service(s3_endpoint: str, gcs_endpoint: str, local_root: Path) -> Iterator[StorageService]:
    root = local_root
    settings_ = StorageSettings(
        connectors={
            "local": LocalConnector(root=root),
            "s3": S3Connector(
                bucket=BUCKET, prefix="pre/", endpoint_url=s3_endpoint, region="us-east-1"
            ),
            "gcs": GcsConnector(
                bucket=BUCKET, endpoint_url=gcs_endpoint, anonymous=True, project="test"
            ),
        },
        max_read_bytes=MAX_READ,
        async_part_bytes=16_384,  # Small, so async reads really split into parts.
        async_max_concurrency=4,
    )
    svc = StorageService(settings_)
    try:
        yield svc
    finally:
        svc.close()


OK = "ok"
CASES: list[tuple[str, str, int, int, Any, str]] = [
    # id, key, start, end, expected (bytes slice bounds or an error), reason
    ("within", "small", 10, 100, (10, 100), OK),
    ("whole", "small", 0, 772, (0, 772), OK),
    ("first-byte", "small", 0, 1, (0, 1), OK),
    ("last-byte", "small", 771, 772, (771, 772), OK),
    ("crossing-eof", "small", 700, 5000, (700, 772), OK),
    ("zero-length", "small", 5, 5, InvalidInput, "bad_range"),
    ("inverted", "small", 10, 5, InvalidInput, "bad_range"),
    ("negative-start", "small", -1, 5, InvalidInput, "bad_range"),
    ("too-large", "small", 0, MAX_READ + 1, InvalidInput, "range_too_large"),
    ("at-eof", "small", 772, 773, InvalidInput, "start_past_eof"),
    ("past-eof", "small", 5000, 6000, InvalidInput, "start_past_eof"),
    ("empty-object", "empty", 0, 1, InvalidInput, "start_past_eof"),
    ("empty-object-wide", "empty", 0, 100, InvalidInput, "start_past_eof"),
    ("missing-key", "no/such/key", 0, 10, InvalidInput, "missing_key"),
    # A directory locally, a mere prefix in a bucket: both INVALID_INPUT, told apart.
    ("prefix-not-object", "nested", 0, 10, InvalidInput, "missing_key|local:not_regular_file"),
    ("parent-segment", "../small", 0, 10, Forbidden, "parent_segment"),
    ("absolute-key", "/small", 0, 10, Forbidden, "absolute_key"),
    ("nul-byte", "sm\x00all", 0, 10, InvalidInput, "invalid_key"),
]


@pytest.mark.parametrize(("connector", "method"), PAIRS)
@pytest.mark.parametrize(
    ("key", "start", "end", "expected", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_range_semantics(
    service: StorageService,
    connector: str,
    method: str,
    key: str,
    start: int,
    end: int,
    expected: Any,
    reason: str,
) -> None:
    if isinstance(expected, tuple):
        result = service.read(connector, key, start, end, method)
        lo, hi = expected
        assert bytes(result.data) == OBJECTS[key][lo:hi]
        assert (result.start, result.end) == (lo, hi)
        assert result.size == len(OBJECTS[key])
        assert result.method == method
        return
    reason, _, local_reason = reason.partition("|local:")
    with pytest.raises(expected) as err:
        service.read(connector, key, start, end, method)
    assert err.value.details["reason"] == (
        local_reason or reason if connector == "local" else reason
    )


@pytest.mark.parametrize("connector", ["s3", "gcs"])
def test_remote_connectors_refuse_mmap_and_auto_means_direct(
    service: StorageService, connector: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        service.read(connector, "small", 0, 10, "mmap")
    assert err.value.details["reason"] == "unsupported_method"
    assert service.read(connector, "small", 0, 10).method == "direct"
    assert service.read("local", "small", 0, 10).method == "mmap"
    assert service.size(connector, "nested/deep/big.bin") == BIG


@pytest.mark.parametrize("connector", ["local", "s3", "gcs"])
@settings(max_examples=20, database=None, deadline=None)
@given(data=st.data())
def test_all_methods_agree_with_the_true_bytes(
    service: StorageService, connector: str, data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, BIG - 1), label="start")
    length = data.draw(st.integers(1, 120_000), label="length")
    expected = OBJECTS["nested/deep/big.bin"][start : start + length]
    for method in CONNECTOR_METHODS[connector]:
        got = service.read(connector, "nested/deep/big.bin", start, start + length, method)
        assert bytes(got.data) == expected, method


@pytest.mark.parametrize("connector", ["local", "s3", "gcs"])
def test_lines_source_splits_and_reads_the_same_everywhere(
    service: StorageService, connector: str
) -> None:
    spec = SourceSpec(connector=connector, key="text/lines.txt", format="lines")
    ranges = split_source(service, spec, 7)
    assert len(ranges) == 7
    lines: list[str] = []
    for start, end in ranges:
        chunk = read_source_chunk(service, spec, start, end)
        assert isinstance(chunk, list)
        lines.extend(chunk)
    assert lines == OBJECTS["text/lines.txt"].decode().splitlines()


@pytest.mark.parametrize("connector", ["s3", "gcs"])
def test_remote_errors_are_typed(service: StorageService, connector: str) -> None:
    for method in CONNECTOR_METHODS[connector]:
        with pytest.raises(RLMError) as err:
            service.read(connector, "small/", 0, 1, method)
        assert err.value.details["reason"] == "invalid_key"


@pytest.mark.parametrize(("connector", "method"), PAIRS)
def test_an_object_that_shrank_under_a_cached_size_is_refused_cleanly(
    service: StorageService, put: Callable[[str, str, bytes], None], connector: str, method: str
) -> None:
    key = f"shrinking/{connector}-{method}"
    put(connector, key, b"x" * 1000)
    assert len(service.read(connector, key, 0, 10, method).data) == 10  # size now cached
    put(connector, key, b"y" * 100)
    # Remote sizes are cached for a while: the backend's 416 (or empty answer) is mapped.
    with pytest.raises(InvalidInput) as err:
        service.read(connector, key, 500, 900, method)
    assert err.value.details["reason"] == "start_past_eof"
    after = service.read(connector, key, 0, 900, method)
    assert bytes(after.data) == b"y" * 100
