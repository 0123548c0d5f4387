"""The actions ``POST /security/validate`` can be asked about, and the route rule of each.

Each action names the scope its route needs and what kind of resource the tenancy rule is
about; the HTTP layer evaluates them with the routes' own checks (the same scope test and the
same tenancy functions), so the answer is what the route would do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from rlm.auth.scopes import (
    SCOPE_ADMIN,
    SCOPE_EXECUTE,
    SCOPE_QUOTA_MANAGE,
    SCOPE_QUOTA_READ,
    SCOPE_READ,
)
from rlm.errors import InvalidInput

__all__ = ["ACTIONS", "ActionRule", "Resource", "action_rule"]

Resource = Literal["none", "task", "user", "user_change", "team", "team_change", "org", "own_org"]


@dataclass(frozen=True, slots=True)
class ActionRule:
    """What a route needs.

    Attributes:
        scope: The scope the route requires.
        resource: What ``context.resource`` names and which tenancy rule applies:
            ``none`` (no tenancy rule), ``task`` (a taskId: its owner, or an admin of its
            org), ``user``/``user_change`` (a userId: oneself, or a manager of its org),
            ``team``/``team_change`` (a teamId: a member or its org's managers / managers
            only), ``org`` (an orgId: managers of it or an ancestor), ``own_org`` (the
            caller's own org).
        route: The route it stands for.
    """

    scope: str
    resource: Resource
    route: str


ACTIONS: Final[Mapping[str, ActionRule]] = MappingProxyType(
    {
        "execute": ActionRule(SCOPE_EXECUTE, "none", "POST /v1/execute"),
        "create_task": ActionRule(SCOPE_EXECUTE, "none", "POST /v1/execute"),
        "create_agent": ActionRule(SCOPE_EXECUTE, "none", "POST /v1/execute"),
        "read_task": ActionRule(SCOPE_READ, "task", "GET /v1/tasks/{taskId}"),
        "cancel_task": ActionRule(SCOPE_EXECUTE, "task", "POST /v1/tasks/{taskId}/cancel"),
        "read_storage": ActionRule(SCOPE_READ, "none", "POST /v1/storage/read"),
        "read_quota": ActionRule(SCOPE_QUOTA_READ, "user", "GET /v1/quotas/user/{userId}"),
        "check_quota": ActionRule(SCOPE_QUOTA_READ, "user", "POST /v1/quotas/user/{userId}/check"),
        "manage_quota": ActionRule(
            SCOPE_QUOTA_MANAGE, "user_change", "PUT /v1/quotas/user/{userId}"
        ),
        "read_team": ActionRule(SCOPE_QUOTA_READ, "team", "GET /v1/quotas/team/{teamId}"),
        "manage_team": ActionRule(
            SCOPE_QUOTA_MANAGE, "team_change", "POST /v1/quotas/team/{teamId}/transfers"
        ),
        "read_org": ActionRule(
            SCOPE_QUOTA_READ, "org", "GET /v1/quotas/enterprise/org/{orgId}/hierarchy"
        ),
        "manage_org": ActionRule(
            SCOPE_QUOTA_MANAGE, "org", "PATCH /v1/quotas/enterprise/org/{orgId}"
        ),
        "read_security_events": ActionRule(SCOPE_ADMIN, "own_org", "GET /v1/security/events"),
        "manage_security_policies": ActionRule(
            SCOPE_ADMIN, "own_org", "PUT /v1/security/policies/{policyId}"
        ),
    }
)
"""Every action, by name."""


def action_rule(action: str) -> ActionRule:
    """The rule of ``action``.

    Raises:
        InvalidInput: an unknown action (the known ones are listed in ``details``).
    """
    try:
        return ACTIONS[action]
    except KeyError:
        raise InvalidInput(
            f"unknown action {action!r}",
            {"actions": sorted(ACTIONS)},
            field="context.action",
        ) from None
