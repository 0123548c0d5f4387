"""Authentication: JWT verification and minting, scopes, tiers and the request principal.

Pure logic (no Ray). The server loads keys once at startup::

    keys = load_verification_keys(settings.auth, settings.state_dir, settings.env)
    principal = await authenticate_async(authorization_header, client_ip, keys, settings.auth)
    principal.require_scope(SCOPE_EXECUTE)
"""

from __future__ import annotations

from rlm.auth.generated_secret import GENERATED_SECRET_FILENAME
from rlm.auth.keys import (
    KeySet,
    SigningKey,
    VerificationKey,
    load_signing_key,
    load_verification_keys,
)
from rlm.auth.principal import ANONYMOUS_PREFIX, Principal
from rlm.auth.scopes import (
    ALL_SCOPES,
    IMPLIED_SCOPES,
    SCOPE_ADMIN,
    SCOPE_EXECUTE,
    SCOPE_QUOTA_MANAGE,
    SCOPE_QUOTA_READ,
    SCOPE_READ,
    expand_scopes,
    format_scope_claim,
    parse_scope_claim,
    validate_scopes,
)
from rlm.auth.settings import (
    SUPPORTED_ALGORITHMS,
    Algorithm,
    AuthConfigurationError,
    AuthSettings,
)
from rlm.auth.tiers import DEFAULT_TIER, TIERS, Tier, TierLimits, is_tier
from rlm.auth.tokens import (
    REQUIRED_CLAIMS,
    authenticate,
    authenticate_async,
    bearer_token,
    issue_token,
    verify_token,
    verify_token_async,
)

__all__ = [
    "ALL_SCOPES",
    "ANONYMOUS_PREFIX",
    "DEFAULT_TIER",
    "GENERATED_SECRET_FILENAME",
    "IMPLIED_SCOPES",
    "REQUIRED_CLAIMS",
    "SCOPE_ADMIN",
    "SCOPE_EXECUTE",
    "SCOPE_QUOTA_MANAGE",
    "SCOPE_QUOTA_READ",
    "SCOPE_READ",
    "SUPPORTED_ALGORITHMS",
    "TIERS",
    "Algorithm",
    "AuthConfigurationError",
    "AuthSettings",
    "KeySet",
    "Principal",
    "SigningKey",
    "Tier",
    "TierLimits",
    "VerificationKey",
    "authenticate",
    "authenticate_async",
    "bearer_token",
    "expand_scopes",
    "format_scope_claim",
    "is_tier",
    "issue_token",
    "load_signing_key",
    "load_verification_keys",
    "parse_scope_claim",
    "validate_scopes",
    "verify_token",
    "verify_token_async",
]
