"""Security policies: the defaults of each category, their settings, and an org's changes.

Every org starts from :data:`DEFAULT_POLICIES`; an admin of the org changes a policy's
``enabled``, ``priority``, ``name`` and ``settings`` (``PUT``/``PATCH
/v1/security/policies/{policyId}``), and only for that org. Policies of the authentication,
authorization and audit categories describe rules the service always enforces: they are
*locked* (they cannot be disabled), though their settings may be tuned where they have any.

============================ ================ ======== ====================================
policyId                     category         priority what
============================ ================ ======== ====================================
``authn-bearer-jwt``         authentication   100      a verified JWT on every route but
                                                       health (locked)
``authz-scopes``             authorization    100      each route's scope (locked)
``authz-tenancy``            authorization    90       own tasks; an org's admins and
                                                       managers for its tenants (locked)
``input-size``               input_validation 100      size caps
``input-json-structure``     input_validation 95       JSON nesting and size bombs
``input-unicode``            input_validation 90       NFKC; hidden characters removed
``input-secrets``            input_validation 80       secrets (``detect-secrets``)
``input-injection``          input_validation 70       known prompt-injection phrasings
``input-path-traversal``     input_validation 60       ``..`` segments, encoded too
``audit-log``                audit            100      what is recorded (locked)
============================ ================ ======== ====================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import Field, ValidationError

from rlm.errors import InvalidInput
from rlm.models.base import INTEGRAL, WireModel, validation_error_to_invalid_input
from rlm.models.security import (
    PolicyCategory,
    SecurityPolicy,
    SecurityPolicyPatch,
    SecurityPolicyUpdate,
    Severity,
)

__all__ = [
    "DEFAULT_POLICIES",
    "SEVERITY_RANK",
    "AuditSettings",
    "InjectionSettings",
    "JsonStructureSettings",
    "NoSettings",
    "PathTraversalSettings",
    "PolicySet",
    "SecretsSettings",
    "SizeSettings",
    "UnicodeSettings",
    "apply_patch",
    "apply_put",
    "default_policy",
    "policy_changes",
    "settings_model",
    "severity_at_least",
]

SEVERITY_RANK: Final[Mapping[str, int]] = {
    "info": 0,
    "low": 1,
    "medium": 2,
    "high": 3,
    "critical": 4,
}
"""Severities in order; a ``critical`` violation refuses the input."""


class _Settings(WireModel):
    """Settings of one policy (camelCase on the wire, unknown keys refused)."""


class NoSettings(_Settings):
    """A policy with nothing to tune."""


class SizeSettings(_Settings):
    """``input-size``.

    Attributes:
        max_chars: Longest text accepted: ``/security/validate``'s input, a task's
            description, each prompt or parameter, each text item.
        max_scan_chars: Text of one task's items scanned by the other input policies; beyond
            it the rest is not scanned, and a ``medium`` violation says so.
        severity: Of a text over ``max_chars``.
    """

    max_chars: Annotated[int, Field(ge=1, le=100_000_000), INTEGRAL] = 1_000_000
    max_scan_chars: Annotated[int, Field(ge=0, le=1_000_000_000), INTEGRAL] = 4_000_000
    severity: Severity = "critical"


class JsonStructureSettings(_Settings):
    """``input-json-structure``: a task's input, and JSON-looking text.

    Attributes:
        max_depth: Deepest nesting of arrays and objects.
        max_values: Most values (array items, object keys and values) in one document.
        severity: Of a document over a limit.
    """

    max_depth: Annotated[int, Field(ge=1, le=10_000), INTEGRAL] = 64
    max_values: Annotated[int, Field(ge=1, le=1_000_000_000), INTEGRAL] = 20_000_000
    severity: Severity = "critical"


class UnicodeSettings(_Settings):
    """``input-unicode``: what finding hidden characters is worth (they are always removed
    from ``sanitized``).

    Attributes:
        bidi_severity: Bidirectional overrides and isolates (Trojan Source).
        tag_severity: Unicode tag characters (invisible ASCII).
        invisible_severity: Zero-width and other format characters, controls.
        private_use_severity: Private-use code points.
        unassigned_severity: Unassigned code points, lone surrogates.
    """

    bidi_severity: Severity = "high"
    tag_severity: Severity = "high"
    invisible_severity: Severity = "medium"
    private_use_severity: Severity = "low"
    unassigned_severity: Severity = "low"


class SecretsSettings(_Settings):
    """``input-secrets``.

    Attributes:
        severity: Of credentials, keys and tokens found by the credential plugins.
        keyword_severity: Of a secret-sounding name assigned a quoted value
            (``password = "..."``), a heuristic.
    """

    severity: Severity = "critical"
    keyword_severity: Severity = "high"


class InjectionSettings(_Settings):
    """``input-injection``.

    Attributes:
        severity: Of a known phrasing found.
        extra_phrases: The org's own phrases, matched as words, case-insensitively.
    """

    severity: Severity = "critical"
    extra_phrases: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=100)
    ] = Field(default_factory=list)


class PathTraversalSettings(_Settings):
    """``input-path-traversal``.

    Attributes:
        severity: Of a ``..`` segment inside free text.
        path_severity: Of traversal in a path (an input that is one path, or a resource),
            and of encoded or overlong forms, which only an evasion would use.
    """

    severity: Severity = "high"
    path_severity: Severity = "critical"


class AuditSettings(_Settings):
    """``audit-log``.

    Attributes:
        min_severity: Policy violations below it are not recorded (401s, 403s, refusals and
            admin changes always are).
        record_validate: Whether violations found by ``POST /security/validate`` are
            recorded too (they are probes of the policies).
    """

    min_severity: Severity = "low"
    record_validate: bool = True


_SETTINGS: Final[dict[str, type[_Settings]]] = {
    "authn-bearer-jwt": NoSettings,
    "authz-scopes": NoSettings,
    "authz-tenancy": NoSettings,
    "input-size": SizeSettings,
    "input-json-structure": JsonStructureSettings,
    "input-unicode": UnicodeSettings,
    "input-secrets": SecretsSettings,
    "input-injection": InjectionSettings,
    "input-path-traversal": PathTraversalSettings,
    "audit-log": AuditSettings,
}

_LOCKED: Final = frozenset({"authn-bearer-jwt", "authz-scopes", "authz-tenancy", "audit-log"})


def _default(
    policy_id: str, name: str, category: PolicyCategory, priority: int, description: str
) -> SecurityPolicy:
    return SecurityPolicy(
        policy_id=policy_id,
        name=name,
        category=category,
        enabled=True,
        priority=priority,
        description=description,
        locked=policy_id in _LOCKED,
        settings=_SETTINGS[policy_id]().to_wire(),
    )


DEFAULT_POLICIES: Final[tuple[SecurityPolicy, ...]] = (
    _default(
        "authn-bearer-jwt",
        "Bearer JWT",
        "authentication",
        100,
        "Every route but health needs a JWT verified against an algorithm allow-list, with "
        "exp, iss, aud and sub; 401s are recorded with their reason, never the token.",
    ),
    _default(
        "authz-scopes",
        "Route scopes",
        "authorization",
        100,
        "Each route needs its scope (rlm:execute, rlm:read, rlm:admin, rlm:quota:read, "
        "rlm:quota:manage; rlm:admin implies all); 403s are recorded.",
    ),
    _default(
        "authz-tenancy",
        "Tenancy",
        "authorization",
        90,
        "A user sees its own tasks; an org's admins see the org's; managers govern only "
        "users, teams and orgs in their org's tree.",
    ),
    _default(
        "input-size",
        "Size caps",
        "input_validation",
        100,
        "Refuses text over maxChars; scans at most maxScanChars of a task's items.",
    ),
    _default(
        "input-json-structure",
        "JSON nesting and size",
        "input_validation",
        95,
        "Refuses JSON nested deeper than maxDepth or holding more than maxValues values.",
    ),
    _default(
        "input-unicode",
        "Unicode normalisation",
        "input_validation",
        90,
        "NFKC, with bidirectional overrides, invisible, tag, private-use and unassigned "
        "characters removed (Trojan Source).",
    ),
    _default(
        "input-secrets",
        "Secrets",
        "input_validation",
        80,
        "API keys, private keys, JWTs, cloud credentials (detect-secrets).",
    ),
    _default(
        "input-injection",
        "Prompt injection",
        "input_validation",
        70,
        "Known prompt-injection phrasings, and the org's own phrases.",
    ),
    _default(
        "input-path-traversal",
        "Path traversal",
        "input_validation",
        60,
        "'..' path segments, percent-encoded and overlong forms, NUL bytes in paths.",
    ),
    _default(
        "audit-log",
        "Audit log",
        "audit",
        100,
        "Security events are appended to a hash-chained log; policy violations from "
        "minSeverity up are recorded.",
    ),
)
"""Every policy, as an org that changed nothing has it."""

_DEFAULTS: Final = {p.policy_id: p for p in DEFAULT_POLICIES}


def _settings_of(policy_id: str, raw: Mapping[str, Any]) -> _Settings:
    try:
        return _SETTINGS[policy_id].model_validate(dict(raw))
    except ValidationError as err:
        raise validation_error_to_invalid_input(err, "settings") from None


def _unknown(policy_id: str) -> InvalidInput:
    return InvalidInput(
        f"no policy {policy_id!r}",
        {"policyId": policy_id, "policies": sorted(_DEFAULTS)},
        field="policyId",
    )


class PolicySet:
    """The policies in force for one org: the defaults with the org's changes.

    Args:
        changed: The org's changed policies by id (as stored); others are the defaults.

    Example:
        >>> PolicySet().settings("input-size").max_chars
        1000000
    """

    def __init__(self, changed: Mapping[str, SecurityPolicy] | None = None) -> None:
        merged = dict(_DEFAULTS)
        for policy_id, policy in (changed or {}).items():
            if policy_id in merged:
                merged[policy_id] = policy
        self._policies = merged
        self._settings = {
            pid: _settings_of(pid, p.settings or {}) for pid, p in self._policies.items()
        }

    def policies(self) -> list[SecurityPolicy]:
        """Every policy, by category, then priority (highest first), then id."""
        order = {c: i for i, c in enumerate(_CATEGORY_ORDER)}
        return sorted(
            self._policies.values(),
            key=lambda p: (order[p.category], -p.priority, p.policy_id),
        )

    def get(self, policy_id: str) -> SecurityPolicy:
        """One policy. Raises :class:`InvalidInput` for an unknown id."""
        try:
            return self._policies[policy_id]
        except KeyError:
            raise _unknown(policy_id) from None

    def enabled(self, policy_id: str) -> bool:
        """Whether the policy applies."""
        return self._policies[policy_id].enabled

    def priority(self, policy_id: str) -> int:
        """The policy's priority (higher runs and reports first)."""
        return self._policies[policy_id].priority

    def settings(self, policy_id: str) -> Any:
        """The policy's parsed settings (e.g. :class:`SizeSettings`)."""
        return self._settings[policy_id]


_CATEGORY_ORDER: Final[tuple[PolicyCategory, ...]] = (
    "authentication",
    "authorization",
    "input_validation",
    "audit",
)


def _checked(base: SecurityPolicy, **fields: Any) -> SecurityPolicy:
    policy = base.model_copy(update=fields)
    if policy.locked and not policy.enabled:
        raise InvalidInput(
            f"{policy.policy_id} is enforced by the service and cannot be disabled",
            {"policyId": policy.policy_id},
            field="enabled",
        )
    policy.settings = _settings_of(policy.policy_id, policy.settings or {}).to_wire()
    return policy


def apply_put(
    current: SecurityPolicy, body: SecurityPolicyUpdate, *, by: str, at: datetime
) -> SecurityPolicy:
    """The policy after ``PUT``: every changeable field replaced (settings not given take
    their defaults).

    Raises:
        InvalidInput: a mismatched id or category, a locked policy disabled, bad settings.
    """
    if body.policy_id is not None and body.policy_id != current.policy_id:
        raise InvalidInput("policyId in the body must match the path", field="policyId")
    if body.category is not None and body.category != current.category:
        raise InvalidInput(
            f"the category of {current.policy_id} is {current.category}; it cannot change",
            field="category",
        )
    default = _DEFAULTS[current.policy_id]
    return _checked(
        current,
        name=body.name if body.name is not None else default.name,
        enabled=body.enabled,
        priority=body.priority,
        settings=dict(body.settings or {}),
        updated_at=at,
        updated_by=by,
    )


def apply_patch(
    current: SecurityPolicy, body: SecurityPolicyPatch, *, by: str, at: datetime
) -> SecurityPolicy:
    """The policy after ``PATCH``: only the fields given change; ``settings`` keys are merged
    into the current settings (JSON merge patch: a ``null`` value restores the default).

    Raises:
        InvalidInput: a locked policy disabled, bad settings.
    """
    fields: dict[str, Any] = {"updated_at": at, "updated_by": by}
    for name in ("name", "enabled", "priority"):
        value = getattr(body, name)
        if value is not None:
            fields[name] = value
    if body.settings is not None:
        merged = dict(current.settings or {})
        for key, value in body.settings.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        fields["settings"] = merged
    return _checked(current, **fields)


def policy_changes(before: SecurityPolicy, after: SecurityPolicy) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for each field that differs (``settings.<key>`` for
    settings), for the audit record of a change."""
    changes: dict[str, list[Any]] = {}
    for name in ("name", "enabled", "priority"):
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            changes[name] = [old, new]
    old_settings, new_settings = before.settings or {}, after.settings or {}
    for key in sorted(set(old_settings) | set(new_settings)):
        if old_settings.get(key) != new_settings.get(key):
            changes[f"settings.{key}"] = [old_settings.get(key), new_settings.get(key)]
    return changes


def settings_model(policy_id: str) -> type[WireModel]:
    """The settings model of one policy (its fields, limits and defaults). Raises
    :class:`InvalidInput` for an unknown id."""
    try:
        return _SETTINGS[policy_id]
    except KeyError:
        raise _unknown(policy_id) from None


def default_policy(policy_id: str) -> SecurityPolicy:
    """The default of one policy. Raises :class:`InvalidInput` for an unknown id."""
    try:
        return _DEFAULTS[policy_id]
    except KeyError:
        raise _unknown(policy_id) from None


def severity_at_least(severity: str, threshold: str) -> bool:
    """Whether ``severity`` ranks at or above ``threshold``."""
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[threshold]
