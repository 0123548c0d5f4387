"""Connectors' access policies: each tenant reads its own prefixes and the public one, nothing
else (default deny), refused before storage is touched; ids cannot forge a prefix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from rlm.errors import Forbidden, InvalidInput
from rlm.storage import (
    AccessPolicy,
    LocalConnector,
    StorageReader,
    StorageService,
    StorageSettings,
    check_access,
    default_storage_settings,
    readable_prefixes,
)

TENANTS = AccessPolicy.tenant_default()
ALICE = StorageReader("alice", "acme")


def _allowed(policy: AccessPolicy, key: str, reader: StorageReader = ALICE) -> bool:
    try:
        check_access("c", policy, key, reader)
    except Forbidden as err:
        reason = err.details["reason"]
    else:
        return True
    assert reason == "not_permitted"
    return False


def test_default_deny() -> None:
    assert readable_prefixes(AccessPolicy(), ALICE) == []
    assert not _allowed(AccessPolicy(), "anything")
    assert LocalConnector(root=Path("/x")).access == AccessPolicy()


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        ("users/alice/a.txt", True),
        ("users/alice/deep/er/a.txt", True),
        ("users//alice/./a.txt", True),  # the local connector resolves it to the same file
        ("./orgs/acme/report.csv", True),
        ("public/hello.txt", True),
        ("users/bob/a.txt", False),
        ("orgs/globex/report.csv", False),
        ("users/alice", False),  # the prefix's own name is not beneath it
        ("users/alice/", False),
        ("users/alicex/a.txt", False),
        ("users/alice/../bob/a.txt", False),
        ("publicity/x", False),
        ("hello.txt", False),
        ("state.db", False),
    ],
)
def test_tenant_default(key: str, allowed: bool) -> None:
    assert _allowed(TENANTS, key) is allowed


def test_the_refusal_says_what_may_be_read() -> None:
    with pytest.raises(Forbidden) as excinfo:
        check_access("local", TENANTS, "users/bob/a.txt", ALICE)
    details = excinfo.value.details
    assert details["readablePrefixes"] == ["users/alice/", "orgs/acme/", "public/"]
    assert details["connector"] == "local"


def test_a_bucket_of_an_orgs_own_and_a_public_connector() -> None:
    bucket = AccessPolicy(orgs=("acme",))
    assert _allowed(bucket, "any/key")
    assert not _allowed(bucket, "any/key", StorageReader("bob", "globex"))
    assert not _allowed(bucket, "any/key", StorageReader("acme"))  # a user named like the org
    open_all = AccessPolicy(public_prefix="")
    assert _allowed(open_all, "any/key", StorageReader("anyone"))


@pytest.mark.parametrize("user", ["alice/x", ".", "..", "", "a b/c"])
def test_ids_that_are_not_one_segment_have_no_prefix(user: str) -> None:
    reader = StorageReader(user, "acme/../globex")
    assert readable_prefixes(TENANTS, reader) == ["public/"]
    assert not _allowed(TENANTS, "users/alice/x/secret", reader)


@pytest.mark.parametrize(
    "fields",
    [
        {"user_prefix": "users/"},  # no placeholder
        {"user_prefix": "users/{user}"},  # no trailing slash
        {"user_prefix": "users/x{user}/"},  # not a whole segment
        {"user_prefix": "/users/{user}/"},
        {"user_prefix": "users/{user}/{user}/"},
        {"org_prefix": "../orgs/{org}/"},
        {"org_prefix": "orgs//{org}/"},
        {"public_prefix": "pub"},
        {"public_prefix": "pub/{user}/"},
    ],
)
def test_bad_policies_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        AccessPolicy(**fields)  # type: ignore[arg-type]


_IDS = st.from_regex(r"[A-Za-z0-9_@:+=,~-][A-Za-z0-9_.@:+=,~-]{0,12}", fullmatch=True)
_SEGMENTS = st.lists(st.sampled_from(["", ".", "..", "x", "users", "orgs", "public", "a.b"]))


@given(me=_IDS, other=_IDS, my_org=_IDS, other_org=_IDS, tail=_SEGMENTS)
def test_no_key_of_another_tenant_is_ever_readable(
    me: str, other: str, my_org: str, other_org: str, tail: list[str]
) -> None:
    reader = StorageReader(me, my_org)
    for prefix, owner, mine in (("users", other, me), ("orgs", other_org, my_org)):
        key = "/".join([prefix, owner, *tail])
        assert _allowed(TENANTS, key, reader) is (owner == mine and _beneath(tail)), key


def _beneath(tail: list[str]) -> bool:
    """Whether a key's tail (after a prefix) names something strictly beneath it."""
    parts = [p for p in tail if p not in ("", ".")]
    return bool(parts) and ".." not in parts


def _service(tmp_path: Path, **local: object) -> StorageService:
    settings = default_storage_settings(tmp_path)
    if local:
        connector = settings.connectors["local"].model_copy(update=local)
        settings = StorageSettings(connectors={"local": connector})
    return StorageService(settings)


def test_the_service_refuses_before_touching_storage(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "users" / "alice").mkdir(parents=True)
    (data / "users" / "bob").mkdir(parents=True)
    (data / "users" / "alice" / "a.txt").write_bytes(b"alice's")
    (data / "users" / "bob" / "b.txt").write_bytes(b"bob's")
    with _service(tmp_path) as storage:
        assert bytes(storage.read("local", "users/alice/a.txt", 0, 7, reader=ALICE).data) == (
            b"alice's"
        )
        # Another tenant's key, existing or not, answers alike: nothing about it is revealed.
        for key in ("users/bob/b.txt", "users/bob/missing.txt"):
            with pytest.raises(Forbidden) as excinfo:
                storage.read("local", key, 0, 5, reader=ALICE)
            assert excinfo.value.details["reason"] == "not_permitted"
        with pytest.raises(InvalidInput):  # a missing key of one's own: 400, as before
            storage.read("local", "users/alice/missing.txt", 0, 5, reader=ALICE)
        # Trusted callers (the Python API) read without a policy.
        assert bytes(storage.read("local", "users/bob/b.txt", 0, 5).data) == b"bob's"


def test_symbolic_links_are_not_followed_by_default(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "users" / "alice").mkdir(parents=True)
    (data / "users" / "bob").mkdir(parents=True)
    (data / "users" / "bob" / "b.txt").write_bytes(b"bob's secret")
    # Beneath the root, but into another tenant's prefix.
    os.symlink("../bob", data / "users" / "alice" / "peek")
    key = "users/alice/peek/b.txt"
    with _service(tmp_path) as storage:
        with pytest.raises(Forbidden) as excinfo:
            storage.read("local", key, 0, 5, reader=ALICE)
        assert excinfo.value.details["reason"] == "symlink_refused"
    for use_openat2 in (True, False):
        with (
            StorageService(default_storage_settings(tmp_path), use_openat2=use_openat2) as storage,
            pytest.raises(Forbidden),
        ):
            storage.read("local", key, 0, 5, reader=ALICE)
    with _service(tmp_path, follow_symlinks=True) as storage:  # an operator's choice
        assert bytes(storage.read("local", key, 0, 3, reader=ALICE).data) == b"bob"


def test_a_request_longer_than_one_answer_is_served_up_to_it(tmp_path: Path) -> None:
    from rlm.models.storage import StorageReadRequest

    public = tmp_path / "data" / "public"
    public.mkdir(parents=True)
    (public / "big.bin").write_bytes(bytes(range(256)) * 8)
    settings = default_storage_settings(tmp_path).model_copy(update={"max_read_bytes": 100})
    with StorageService(settings) as storage:
        body = StorageReadRequest(connector="local", key="public/big.bin", start=10, end=5000)
        got = storage.read_request(body, ALICE)
        assert (got.start, got.end, got.size) == (10, 110, 2048)
        assert bytes(got.data) == (bytes(range(256)) * 8)[10:110]
        # Over the task-input path (explicit limits) a too-long range is still refused.
        with pytest.raises(InvalidInput):
            storage.read("local", "public/big.bin", 0, 5000, max_bytes=100)
