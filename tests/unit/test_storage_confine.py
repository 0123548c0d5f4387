"""Local confinement: the traversal matrix, on openat2 and on the O_NOFOLLOW walk."""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm.errors import Forbidden, InvalidInput, RLMError
from rlm.storage import confine
from rlm.storage.confine import open_beneath, openat2_available
from rlm.storage.keys import local_key_parts

MODES = [
    pytest.param(
        True,
        id="openat2",
        marks=pytest.mark.skipif(not openat2_available(), reason="kernel has no openat2"),
    ),
    pytest.param(False, id="nofollow-walk"),
]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, int]]:
    """A root with good files, escapes, a FIFO, a socket, and a secret next to it."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub" / "deeper").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(b"SECRET")
    (root / "plain").write_bytes(b"plain")
    (root / "sub" / "f").write_bytes(b"sub-f")
    (root / "sub" / "deeper" / "g").write_bytes(b"deeper-g")
    os.symlink("sub/f", root / "link_inside")
    os.symlink("../f", root / "sub" / "deeper" / "up_inside")
    os.symlink("sub", root / "dirlink_inside")
    os.symlink(str(outside / "secret"), root / "abs_out")
    os.symlink("../outside/secret", root / "rel_out")
    os.symlink("..", root / "dir_out")
    os.symlink(str(root / "plain"), root / "abs_in")  # absolute, even though it points in
    os.symlink("/dev/null", root / "devnull")
    os.symlink("/proc/self/root/etc/hostname", root / "magic")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("missing_target", root / "dangling")
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    monkeypatch.chdir(root)  # A socket's path must fit in 108 bytes; tmp_path may not.
    sock.bind("sock")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield root, root_fd
    finally:
        os.close(root_fd)
        sock.close()


GOOD = [
    ("plain", b"plain"),
    ("sub/f", b"sub-f"),
    ("sub/deeper/g", b"deeper-g"),
    ("link_inside", b"sub-f"),
    ("sub/deeper/up_inside", b"sub-f"),
    ("dirlink_inside/f", b"sub-f"),
    ("./sub//f", b"sub-f"),
]

REFUSED: list[tuple[str, type[RLMError], str]] = [
    ("abs_out", Forbidden, "escapes_root"),
    ("rel_out", Forbidden, "escapes_root"),
    ("dir_out/outside/secret", Forbidden, "escapes_root"),
    ("abs_in", Forbidden, "escapes_root"),
    ("devnull", Forbidden, "escapes_root"),
    ("magic", Forbidden, "escapes_root"),
    ("loop_a", Forbidden, "symlink_refused"),
    ("dangling", InvalidInput, "missing_key"),
    ("nope", InvalidInput, "missing_key"),
    ("plain/x", InvalidInput, "missing_key"),
    ("sub", InvalidInput, "not_regular_file"),
    ("fifo", InvalidInput, "not_regular_file"),
    ("sock", InvalidInput, "not_regular_file"),
]


def _read(fd: int) -> bytes:
    try:
        return os.pread(fd, 100, 0)
    finally:
        os.close(fd)


@pytest.mark.parametrize("use_openat2", MODES)
@pytest.mark.parametrize(("key", "content"), GOOD)
def test_keys_inside_the_root_open(
    tree: tuple[Path, int], use_openat2: bool, key: str, content: bytes
) -> None:
    _, root_fd = tree
    fd = open_beneath(root_fd, local_key_parts(key), use_openat2=use_openat2)
    assert _read(fd) == content


@pytest.mark.timeout(20)  # A FIFO opened without O_NONBLOCK would hang here.
@pytest.mark.parametrize("use_openat2", MODES)
@pytest.mark.parametrize(("key", "error", "reason"), REFUSED)
def test_escapes_and_non_regular_files_are_refused(
    tree: tuple[Path, int], use_openat2: bool, key: str, error: type[RLMError], reason: str
) -> None:
    _, root_fd = tree
    with pytest.raises(error) as err:
        open_beneath(root_fd, local_key_parts(key), use_openat2=use_openat2)
    assert err.value.details["reason"] == reason
    assert err.value.status == (403 if error is Forbidden else 400)


@pytest.mark.parametrize("use_openat2", MODES)
def test_parent_segments_given_directly_cannot_escape(
    tree: tuple[Path, int], use_openat2: bool
) -> None:
    # keys.py refuses '..' first; the resolver must hold even if handed one.
    _, root_fd = tree
    with pytest.raises(Forbidden) as err:
        open_beneath(root_fd, ["..", "outside", "secret"], use_openat2=use_openat2)
    assert err.value.details["reason"] == "escapes_root"


@pytest.mark.parametrize("use_openat2", MODES)
def test_nul_bytes_are_malformed(tree: tuple[Path, int], use_openat2: bool) -> None:
    _, root_fd = tree
    with pytest.raises(InvalidInput) as err:
        open_beneath(root_fd, ["pla\x00in"], use_openat2=use_openat2)
    assert err.value.details["reason"] == "invalid_key"


@pytest.mark.parametrize("use_openat2", MODES)
def test_a_device_node_inside_the_root_is_refused(
    tree: tuple[Path, int], use_openat2: bool
) -> None:
    root, root_fd = tree
    try:
        os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as err:
        pytest.skip(f"cannot create a device node here: {err}")
    with pytest.raises(InvalidInput) as caught:
        open_beneath(root_fd, ["null"], use_openat2=use_openat2)
    assert caught.value.details["reason"] == "not_regular_file"


def test_enosys_falls_back_to_the_walk(
    tree: tuple[Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, root_fd = tree

    def _no_openat2(*_: object) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(confine, "_openat2", _no_openat2)
    monkeypatch.setattr(confine, "_openat2_state", None)
    assert not openat2_available()
    assert _read(open_beneath(root_fd, ["link_inside"])) == b"sub-f"
    # A probe that said yes, then ENOSYS on use (a seccomp filter): falls back and learns.
    monkeypatch.setattr(confine, "_openat2_state", True)
    assert _read(open_beneath(root_fd, ["sub", "f"])) == b"sub-f"
    assert confine._openat2_state is False
    with pytest.raises(Forbidden):
        open_beneath(root_fd, ["rel_out"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("use_openat2", MODES)
def test_swapping_a_directory_for_an_escaping_symlink_never_leaks(
    tmp_path: Path, use_openat2: bool
) -> None:
    """The race ``realpath`` + prefix check loses: a component flips to a symlink."""
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"inside")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_bytes(b"SECRET")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    stop = threading.Event()

    def _flip() -> None:
        while not stop.is_set():
            os.rename(root / "d", root / "d_real")
            os.symlink("../out", root / "d")
            os.unlink(root / "d")
            os.rename(root / "d_real", root / "d")

    flipper = threading.Thread(target=_flip)
    flipper.start()
    seen: set[bytes] = set()
    deadline = time.monotonic() + 1.0
    try:
        while time.monotonic() < deadline:
            try:
                fd = open_beneath(root_fd, ["d", "f"], use_openat2=use_openat2)
            except (Forbidden, InvalidInput):
                seen.add(b"<refused>")
                continue
            seen.add(_read(fd))
    finally:
        stop.set()
        flipper.join()
        os.close(root_fd)
    assert b"SECRET" not in seen
    assert b"inside" in seen
