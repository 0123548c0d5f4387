"""``context`` of ``POST /security/validate``: may ``userId`` do ``action`` on ``resource``?

Answered with the routes' own checks, not a copy of them: the scope test of
:meth:`~rlm.auth.principal.Principal.require_scope`, task visibility through the engine's
``status`` with the same :class:`~rlm.admission.Viewer` the task routes pass, and the quota
routes' tenancy functions (``_target``, ``_govern``). Asking about another user is itself a
tenancy question: only a manager of that user's org may (else 403, as the quota routes
answer). The service does not hold other users' tokens, so for them only tenancy is checked
(an ``info`` violation says so).
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import Request

from rlm.auth.principal import Principal
from rlm.errors import Forbidden, InvalidInput, TaskNotFound, Unauthorized
from rlm.models.security import SecurityContext, Severity, Violation
from rlm.security.authorization import ActionRule, action_rule
from serve_app.deps import Caller
from serve_app.routes.quotas import _govern, _ledger, _target

__all__ = ["authorize"]


def _violation(policy_id: str, message: str, severity: Severity = "critical") -> Violation:
    return Violation(
        policy_id=policy_id,
        category="authorization",
        severity=severity,
        message=message,
        field="context",
    )


async def authorize(request: Request, caller: Caller, context: SecurityContext) -> list[Violation]:
    """The authorization violations of ``context`` (none: the route would allow it).

    Raises:
        InvalidInput: an unknown action, or a resource missing where the rule needs one.
        Forbidden: the caller may not ask about ``context.userId``.
    """
    if context.action is None:
        return []
    rule = action_rule(context.action)
    me = caller.principal
    subject = me.user_id if context.user_id in (None, "me") else context.user_id
    assert subject is not None
    found: list[Violation] = []
    if subject == me.user_id:
        who = caller
        try:
            me.require_scope(rule.scope)
        except (Forbidden, Unauthorized) as err:
            found.append(_violation("authz-scopes", f"{rule.route}: {err.message}"))
    else:
        await _govern(request, caller, "user", subject)  # only its org's managers may ask
        chain = await _ledger(request, caller, "governing_orgs", "user", subject, count=False)
        # Their scopes live in their tokens: assume the route's, check the tenancy.
        principal = Principal(
            user_id=subject,
            scopes=frozenset({rule.scope}),
            tier=me.tier,
            org=chain[0] if chain else None,
        )
        who = replace(caller, principal=principal)
        found.append(
            _violation(
                "authz-scopes",
                f"{subject}'s scopes are in its tokens, which this service does not hold: "
                f"only tenancy was checked ({rule.route} needs {rule.scope})",
                "info",
            )
        )
    refusal = await _tenancy(request, who, rule, context.resource)
    if refusal is not None:
        found.append(_violation("authz-tenancy", f"{rule.route}: {refusal}"))
    return found


async def _tenancy(
    request: Request, caller: Caller, rule: ActionRule, resource: str | None
) -> str | None:
    """Why the route's tenancy rule refuses ``resource`` for ``caller`` (``None``: allowed)."""
    kind = rule.resource
    p = caller.principal
    if kind == "none":
        return None
    if kind == "own_org":
        if p.org is None:
            return "the token names no org"
        if resource not in (None, p.org):
            return f"only your own org ({p.org})"
        return None
    if resource is None:
        raise InvalidInput(
            f"{rule.route} acts on a resource: give context.resource", field="context.resource"
        )
    try:
        if kind == "task":
            await request.app.state.hv.ask("status", resource, caller.viewer, None)
        elif kind == "user":
            await _target(request, caller, resource)
        elif kind == "user_change":
            if resource not in ("me", p.user_id):
                await _govern(request, caller, "user", resource)
        elif kind == "team":
            members = await _team_members(request, caller, resource)
            if p.user_id not in members:
                await _govern(request, caller, "team", resource)
        elif kind == "team_change":
            await _govern(request, caller, "team", resource)
        elif kind == "org":
            await _govern(request, caller, "org", resource)
    except TaskNotFound:
        return f"task {resource} is not one this user may see"
    except (Forbidden, InvalidInput) as err:
        return err.message
    return None


async def _team_members(request: Request, caller: Caller, team_id: str) -> set[str]:
    try:
        status = await _ledger(request, caller, "team_status", team_id, count=False)
    except InvalidInput:
        return set()
    return {m.user_id for m in status.members}
