"""The exact bodies of ``PUT`` and ``PATCH /security/policies/{policyId}``, one pair per policy.

One generic body (``settings: object``) would let the API document promise settings a policy
does not have, and ``enabled: false`` for a policy the service enforces. Each policy's pair
here carries its own settings model (its keys, limits and defaults), ``enabled`` fixed to
``true`` where the policy is locked, and its own ``policyId`` and ``category``; the HTTP layer
documents one route per policy with them, and turns a checked body back into the generic
:class:`~rlm.models.security.SecurityPolicyUpdate` / ``SecurityPolicyPatch`` the policy
logic applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field, create_model

from rlm.models.base import INTEGRAL, WireModel
from rlm.models.security import SecurityPolicyPatch, SecurityPolicyUpdate
from rlm.security.policies import DEFAULT_POLICIES, settings_model

__all__ = ["PolicyBodies", "policy_bodies"]

_Name = Annotated[str, Field(min_length=1, max_length=200)]
_Priority = Annotated[int, Field(ge=0, le=1000), INTEGRAL]


@dataclass(frozen=True, slots=True)
class PolicyBodies:
    """The two bodies of one policy.

    Attributes:
        policy_id: The policy.
        put: ``PUT``'s body model (every changeable field).
        patch: ``PATCH``'s body model (the fields given change; a ``null`` setting restores
            its default).
    """

    policy_id: str
    put: type[WireModel]
    patch: type[WireModel]

    def to_update(self, body: WireModel) -> SecurityPolicyUpdate:
        """A checked ``PUT`` body as the generic update."""
        fields = body.model_dump(exclude_unset=True)
        fields["settings"] = _given(getattr(body, "settings", None))
        return SecurityPolicyUpdate.model_validate(fields)

    def to_patch(self, body: WireModel) -> SecurityPolicyPatch:
        """A checked ``PATCH`` body as the generic patch (``null`` settings kept)."""
        fields = body.model_dump(exclude_unset=True)
        fields["settings"] = _given(getattr(body, "settings", None))
        return SecurityPolicyPatch.model_validate(fields)


def _given(settings: WireModel | None) -> dict[str, Any] | None:
    """The settings keys the caller gave, on the wire's names (explicit ``null`` kept)."""
    if settings is None:
        return None
    return settings.model_dump(by_alias=True, exclude_unset=True, mode="json")


def _camel(policy_id: str) -> str:
    return "".join(part.capitalize() for part in policy_id.split("-"))


def _partial(model: type[WireModel], name: str) -> type[WireModel]:
    """``model`` with every field optional and nullable (``null``: back to the default)."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]  # keep ge/le/lengths
        fields[field_name] = (annotation | None, None)
    partial: type[WireModel] = create_model(
        name, __base__=WireModel, __doc__=f"Changes to {model.__name__}.", **fields
    )
    return partial


@cache
def policy_bodies() -> tuple[PolicyBodies, ...]:
    """The bodies of every policy, in :data:`~rlm.security.policies.DEFAULT_POLICIES` order."""
    made = []
    for policy in DEFAULT_POLICIES:
        pid, camel = policy.policy_id, _camel(policy.policy_id)
        settings = settings_model(pid)
        enabled: Any = Literal[True] if policy.locked else bool
        doc_locked = " It is enforced by the service: ``enabled`` must stay true." * policy.locked
        put_fields: dict[str, Any] = {
            "policy_id": (Literal[pid] | None, None),
            "name": (_Name | None, None),
            "category": (Literal[policy.category] | None, None),
            "enabled": (enabled, ...),
            "priority": (_Priority, ...),
            "settings": (settings | None, None),
        }
        put: type[WireModel] = create_model(
            f"{camel}PolicyUpdate",
            __base__=WireModel,
            __doc__=f"``PUT /security/policies/{pid}``: every changeable field (settings not "
            f"given take their defaults).{doc_locked}",
            **put_fields,
        )
        patch_fields: dict[str, Any] = {
            "name": (_Name | None, None),
            "enabled": (enabled | None, None),
            "priority": (_Priority | None, None),
            "settings": (_partial(settings, f"{camel}SettingsPatch") | None, None),
        }
        patch: type[WireModel] = create_model(
            f"{camel}PolicyPatch",
            __base__=WireModel,
            __doc__=f"``PATCH /security/policies/{pid}``: the fields given change.{doc_locked}",
            **patch_fields,
        )
        made.append(PolicyBodies(pid, put, patch))
    return tuple(made)
