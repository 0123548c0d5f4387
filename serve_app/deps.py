"""Dependencies every route declares: who is calling, with which scope, under which limits.

``Caller`` authenticates and checks the route's scope: a request without a token, or with one
lacking the scope, is refused there (401, 403) without being counted or read further. Routes
that reach the engine pass ``caller.admission`` with their call, so the rate limit is counted in
the same hop; other routes use ``admitted``, which counts it first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rlm.admission import Admission, Viewer
from rlm.auth.principal import Principal
from rlm.auth.scopes import SCOPE_ADMIN
from rlm.auth.tokens import bearer_token
from rlm.errors import Unauthorized
from rlm.storage.access import StorageReader

__all__ = ["Bearer", "Caller", "admitted", "authenticated", "count_request"]

#: Declares the bearer scheme in the OpenAPI document (the docs' Authorize button); the token
#: itself is read and verified by :func:`rlm.auth.tokens.authenticate`, with this service's
#: error envelope, so the scheme never answers on its own (``auto_error=False``).
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="A JWT from `rlm token` or the operator's issuer; scopes `rlm:*` in its claims.",
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of a request."""

    principal: Principal

    @property
    def admission(self) -> Admission:
        """Its rate-limit key, tier limits, and the quotas its tasks draw on."""
        p = self.principal
        return Admission(
            p.rate_limit_key,
            p.limits,
            user_id=None if p.is_anonymous else p.user_id,
            tier=p.tier,
            team_id=p.team,
            org_id=p.org,
        )

    @property
    def viewer(self) -> Viewer:
        """Whose tasks it may see."""
        p = self.principal
        return Viewer(p.user_id, p.org, p.has_scope(SCOPE_ADMIN))

    @property
    def reader(self) -> StorageReader:
        """Who it reads storage as (the connectors' access policies decide what it may)."""
        p = self.principal
        return StorageReader(p.user_id, p.org)

    @property
    def owner(self) -> dict[str, Any]:
        """The owner fields of the tasks it starts."""
        p = self.principal
        return {"owner_id": p.user_id, "org_id": p.org, "team_id": p.team}


async def _principal(request: Request) -> Principal:
    state = request.app.state
    client = request.client.host if request.client is not None else "unknown"
    # A token signed by an identity provider may need its JWKS fetched: asynchronously, so
    # the replica's event loop keeps serving everyone else meanwhile.
    token = bearer_token(request.headers.get("authorization"))
    principal = (
        Principal.anonymous(client) if token is None else await state.tokens.principal(token)
    )
    request.state.principal = principal  # who a refusal or an admin change is recorded for
    return principal


async def count_request(request: Request, principal: Principal) -> dict[str, str]:
    """Count the request against the caller's rate limits (one engine call); its headers.

    Raises:
        RateLimited: the caller has no room left (the headers on the error).
    """
    _, headers = await request.app.state.hv.ask(
        "admit", Admission(principal.rate_limit_key, principal.limits)
    )
    request.state.rate = headers
    return dict(headers)


def _refuse_anonymous(principal: Principal, scope: str) -> None:
    # Refused before anything is counted or read: a caller without a token costs one header
    # check (and is never told 429: its requests never reach the rate limiter).
    if principal.is_anonymous:
        raise Unauthorized("this route needs a bearer token", {"requiredScope": scope})
    principal.require_scope(scope)


def authenticated(scope: str | None) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller, holding ``scope``; the rate is counted by the engine call.

    A request without a token, or whose token lacks ``scope``, is refused (401, 403) at once.
    """

    async def dependency(request: Request, _token: Bearer) -> Caller:
        principal = await _principal(request)
        if scope is not None:
            _refuse_anonymous(principal, scope)
        return Caller(principal)

    return dependency


def admitted(scope: str | None) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller, holding ``scope``, with this request counted (or refused).

    A request without a token, or whose token lacks ``scope``, is refused before it is counted.
    """

    async def check(request: Request) -> Caller:
        principal = await _principal(request)
        if scope is not None:
            _refuse_anonymous(principal, scope)
        await count_request(request, principal)
        return Caller(principal)

    if scope is None:
        return check  # a token is optional: the OpenAPI document does not demand one

    async def dependency(request: Request, _token: Bearer) -> Caller:
        return await check(request)

    return dependency
