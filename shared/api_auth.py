"""FastAPI dependencies for API-key auth: `Authorization: Bearer <key>` → `Principal`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import KeyCache, Principal, Role
from shared.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="An Engage API key: `Bearer eng_…`")


# Documents the scheme on routes that authenticate inline (hot paths skip dependency solving).
BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


async def authorize(request: Request, role: Role | None = None) -> Principal:
    """The caller's principal from `Authorization: Bearer <key>`, checked for `role`."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized()
    cache: KeyCache = request.app.state.key_cache
    principal = await cache.resolve(key.strip())
    if principal is None:
        raise Unauthorized()
    if role is not None and not principal.has(role):
        raise Forbidden(f"this key lacks the '{role}' role", code="missing_role")
    return principal


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys carrying `role` (or `admin`)."""

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        return await authorize(request, role)

    dependency.__name__ = f"require_{role}"
    return dependency


def require_any(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys carrying any of `roles` (or `admin`)."""

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        principal = await authorize(request)
        if not any(principal.has(role) for role in roles):
            raise Forbidden(
                f"this key needs one of the roles {', '.join(roles)}", code="missing_role"
            )
        return principal

    dependency.__name__ = "require_any_" + "_".join(roles)
    return dependency


RequireViewer = Annotated[Principal, Depends(require(Role.VIEWER))]
RequireCampaignOwner = Annotated[Principal, Depends(require(Role.CAMPAIGN_OWNER))]
RequireApprover = Annotated[Principal, Depends(require(Role.APPROVER))]
RequireAdmin = Annotated[Principal, Depends(require(Role.ADMIN))]
# Campaign reads: whoever works on campaigns or watches them.
RequireCampaignReader = Annotated[
    Principal, Depends(require_any(Role.VIEWER, Role.CAMPAIGN_OWNER, Role.APPROVER))
]
