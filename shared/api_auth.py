"""FastAPI dependencies for API-key auth: `Authorization: Bearer <key>` → `Principal`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import KeyCache, Principal, Role
from shared.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="An Engage API key: `Bearer eng_…`")


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized()
    cache: KeyCache = request.app.state.key_cache
    principal = await cache.resolve(credentials.credentials)
    if principal is None:
        raise Unauthorized()
    return principal


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys carrying `role` (or `admin`)."""

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.has(role):
            raise Forbidden(f"this key lacks the '{role}' role", code="missing_role")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


Authenticated = Annotated[Principal, Depends(authenticate)]
RequireIngest = Annotated[Principal, Depends(require(Role.INGEST))]
RequireImporter = Annotated[Principal, Depends(require(Role.IMPORTER))]
RequireViewer = Annotated[Principal, Depends(require(Role.VIEWER))]
RequireCampaignOwner = Annotated[Principal, Depends(require(Role.CAMPAIGN_OWNER))]
RequireApprover = Annotated[Principal, Depends(require(Role.APPROVER))]
RequireAdmin = Annotated[Principal, Depends(require(Role.ADMIN))]
