"""Scopes, the tier table and the principal."""

from __future__ import annotations

import importlib
import pickle
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

import rlm.auth
from rlm.auth import (
    ALL_SCOPES,
    DEFAULT_TIER,
    SCOPE_ADMIN,
    SCOPE_EXECUTE,
    SCOPE_QUOTA_MANAGE,
    SCOPE_QUOTA_READ,
    SCOPE_READ,
    TIERS,
    Principal,
    TierLimits,
    format_scope_claim,
    is_tier,
    parse_scope_claim,
    validate_scopes,
)
from rlm.errors import Forbidden, InvalidInput, Unauthorized


def test_scope_names_match_the_api_document() -> None:
    assert {SCOPE_EXECUTE, SCOPE_READ, SCOPE_ADMIN, SCOPE_QUOTA_READ, SCOPE_QUOTA_MANAGE} == {
        "rlm:execute",
        "rlm:read",
        "rlm:admin",
        "rlm:quota:read",
        "rlm:quota:manage",
    }
    assert (
        frozenset({"rlm:execute", "rlm:read", "rlm:admin", "rlm:quota:read", "rlm:quota:manage"})
        == ALL_SCOPES
    )


def test_parse_scope_claim() -> None:
    assert parse_scope_claim(None) == frozenset()
    assert parse_scope_claim("") == frozenset()
    assert parse_scope_claim("  rlm:read\trlm:execute  ") == {SCOPE_READ, SCOPE_EXECUTE}
    # Unknown scopes (other services', typos) grant nothing and are dropped.
    assert parse_scope_claim("openid rlm:reed rlm:read") == {SCOPE_READ}
    assert parse_scope_claim(["rlm:read", "email"]) == {SCOPE_READ}
    assert parse_scope_claim(SCOPE_QUOTA_MANAGE) == {SCOPE_QUOTA_MANAGE, SCOPE_QUOTA_READ}
    assert parse_scope_claim(SCOPE_ADMIN) == ALL_SCOPES
    for bad in (42, {"rlm:read": True}, ["rlm:read", 1], "rlm:read " * 1000):
        with pytest.raises(ValueError):
            parse_scope_claim(bad)


def test_validate_and_format_scopes() -> None:
    assert validate_scopes([SCOPE_READ, SCOPE_READ]) == {SCOPE_READ}
    with pytest.raises(InvalidInput) as excinfo:
        validate_scopes([SCOPE_READ, "rlm:root"])
    assert excinfo.value.details["unknownScopes"] == ["rlm:root"]
    assert format_scope_claim([SCOPE_READ, SCOPE_EXECUTE, SCOPE_READ]) == "rlm:execute rlm:read"


def test_tier_table_is_exactly_the_api_document() -> None:
    assert dict(TIERS) == {
        "anonymous": TierLimits(10, 100, 0),
        "user": TierLimits(60, 1_000, 5),
        "power_user": TierLimits(120, 5_000, 20),
        "admin": TierLimits(300, 20_000, 100),
        "enterprise": TierLimits(600, 50_000, 500),
    }
    user = TIERS["user"]
    assert (user.requests_per_minute, user.requests_per_hour, user.concurrent_agents) == (
        60,
        1000,
        5,
    )
    assert DEFAULT_TIER == "user"
    with pytest.raises(TypeError):
        TIERS["user"] = TierLimits(1, 1, 1)  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        user.requests_per_minute = 1_000_000  # type: ignore[misc]
    with pytest.raises(ValueError):
        TierLimits(-1, 1, 1)


def test_is_tier() -> None:
    assert all(is_tier(name) for name in TIERS)
    assert not is_tier("root")
    assert not is_tier(None)
    assert not is_tier("User")


def test_principal_scopes() -> None:
    principal = Principal("alice", frozenset({SCOPE_READ}), "user", token_id="j1")
    assert principal.has_scope(SCOPE_READ)
    assert not principal.has_scope(SCOPE_EXECUTE)
    principal.require_scope(SCOPE_READ)
    with pytest.raises(Forbidden) as excinfo:
        principal.require_scope(SCOPE_EXECUTE)
    assert excinfo.value.status == 403
    assert excinfo.value.code == "FORBIDDEN"
    assert excinfo.value.details == {"requiredScope": SCOPE_EXECUTE}
    assert principal.limits == TIERS["user"]


def test_anonymous_principal() -> None:
    anon = Principal.anonymous("203.0.113.9")
    assert anon.user_id == "anonymous:203.0.113.9"
    assert anon.rate_limit_key == "anonymous:203.0.113.9"
    assert anon.tier == "anonymous"
    assert anon.scopes == frozenset()
    assert anon.is_anonymous
    assert anon.limits.concurrent_agents == 0
    # Anonymous callers get 401: a token could help, which a 403 would deny.
    with pytest.raises(Unauthorized) as excinfo:
        anon.require_scope(SCOPE_EXECUTE)
    assert excinfo.value.status == 401
    assert excinfo.value.details == {"requiredScope": SCOPE_EXECUTE}
    assert pickle.loads(pickle.dumps(anon)) == anon
    with pytest.raises(FrozenInstanceError):
        anon.tier = "admin"  # type: ignore[misc]


@pytest.mark.parametrize(
    "module",
    [
        "rlm.auth",
        "rlm.auth.generated_secret",
        "rlm.auth.keys",
        "rlm.auth.principal",
        "rlm.auth.scopes",
        "rlm.auth.settings",
        "rlm.auth.tiers",
        "rlm.auth.tokens",
    ],
)
def test_modules_export_sorted_existing_names(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    # isort style, as ruff's RUF022 wants: CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    for name in names:
        assert hasattr(mod, name), f"{module}.{name}"


def test_package_exports_what_it_means_to() -> None:
    expected = {
        "ALL_SCOPES", "ANONYMOUS_PREFIX", "DEFAULT_TIER", "GENERATED_SECRET_FILENAME",
        "IMPLIED_SCOPES", "REQUIRED_CLAIMS", "SCOPE_ADMIN", "SCOPE_EXECUTE",
        "SCOPE_QUOTA_MANAGE", "SCOPE_QUOTA_READ", "SCOPE_READ", "SUPPORTED_ALGORITHMS", "TIERS",
        "Algorithm", "AuthConfigurationError", "AuthSettings", "KeySet", "Principal",
        "SigningKey", "Tier", "TierLimits", "VerificationKey", "authenticate",
        "authenticate_async", "bearer_token",
        "expand_scopes", "format_scope_claim", "is_tier", "issue_token", "load_signing_key",
        "load_verification_keys", "parse_scope_claim", "validate_scopes", "verify_token",
        "verify_token_async",
    }  # fmt: skip
    assert set(rlm.auth.__all__) == expected


def test_auth_does_not_import_ray() -> None:
    package_dir = Path(rlm.auth.__file__).parent
    for source in package_dir.glob("*.py"):
        text = source.read_text()
        assert "import ray" not in text, source.name
        assert "from ray" not in text, source.name
